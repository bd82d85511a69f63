//! Recipe sources: clone or copy into the run's abra home, check out the ref, list published versions.
