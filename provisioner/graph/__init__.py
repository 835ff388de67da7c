"""Pure: a topology (and, with --live, the broker's state and the drift between them) as a picture.

model.py builds the graph (nodes, edges, their status); render.py writes it as
Mermaid or Graphviz DOT, escaping every name, since names are hostile input.
"""
