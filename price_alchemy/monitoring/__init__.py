"""Monitoring: Elasticsearch connection and index templates, request-event shipping, drift, Kibana panels.

Submodules are imported where needed (the Elasticsearch client is only loaded by the code that
talks to Elasticsearch).
"""
