"""Pieces every docked widget shares: worker + progress + Cancel (:mod:`.workers`), parameter
forms and small Qt parts (:mod:`.parts`), the colour legend (:mod:`.legend`) and the docking of
the plugin's widgets (:mod:`.docking`)."""
