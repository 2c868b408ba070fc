"""Optional adapters to other libraries, imported only on demand.

The core never imports anything here. ``eventmem.integrations.langchain`` needs the
``langchain`` extra: ``pip install 'eventmem[langchain]'``;
``eventmem.integrations.pydantic_ai`` the ``pydantic-ai`` extra:
``pip install 'eventmem[pydantic-ai]'``.
"""
