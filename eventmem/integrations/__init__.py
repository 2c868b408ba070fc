"""Optional adapters to other libraries, imported only on demand.

The core never imports anything here. Each adapter needs its extra:
``eventmem.integrations.langchain`` the ``langchain`` extra
(``pip install 'eventmem[langchain]'``), ``eventmem.integrations.openai_agents`` the
``openai-agents`` extra, ``eventmem.integrations.pydantic_ai`` the ``pydantic-ai`` extra.
"""
