"""Media handling at registration (the patent's ST2): kind detection, previews, bundles."""
