"""Pure: plans and problems as other tools read them (a pull-request comment, GitHub workflow annotations)."""
