"""The coding agent: a person describes an app, the agent plans files and writes them.

See graph.yaml for the shape and the commands; offline.yaml scripts the offline model.
"""
