"""Training (:mod:`.train`, :mod:`.distributed`, :mod:`.checkpoint`), inference and export."""
