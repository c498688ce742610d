"""Framework integrations of the SDK, each behind its extra: ``langchain``
(``usefirst[langchain]``), ``llamaindex`` (``usefirst[llamaindex]``) and ``openlineage``
(``usefirst[openlineage]``). ``lineage_mapping`` (the OpenLineage naming rules, used by
the server) and ``chunks`` need no extra."""
