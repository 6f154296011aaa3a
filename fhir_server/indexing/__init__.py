"""Search values out of resources: expression evaluation (`extract`) and normalisation (`normalize`).

https://hl7.org/fhir/R4/search.html

Pure functions, below `search/` in the layers (docs/architecture.md): the search registry and the
per-type compile modules use them on both sides, rows and queries. Writing a resource's index
rows (`write_index`) needs the registry, so it lives above, in `search/indexer.py`.
"""
