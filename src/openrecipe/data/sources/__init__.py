"""Source-specific fetching and document building for the ``acquire`` stage.

One module per concern: ``fetch`` (package clients, hash pinning, safe unpacking), ``rdata``
(R serialization), and one module per source format (``brown``, ``austen``, ``stdlib``,
``synthetic_math``). Each format module turns unpacked files into document records."""
