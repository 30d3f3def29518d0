"""EMV payment application (EMV 4.4 Books 1–4, EMV CPS 1.1 personalization)."""
