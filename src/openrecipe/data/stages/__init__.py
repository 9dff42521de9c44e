"""The curation stages after ``curate``, each a thin ``run(ctx)`` over a library module of
``openrecipe.data`` (langid, fuzzy_dedup, quality, decontam) with the common accounting."""
