"""Persistence: the backend interface, the operations both backends share, and one
package per database (``sqlite``, ``postgres``)."""
