"""The served models: one description per model (:mod:`control.served.registry`), its
routing rule, pipeline, typed finding artefacts, viewer views and result objects."""
