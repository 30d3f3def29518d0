"""cardlab personalizer: data preparation (issuer profile + cardholder records
→ per-card perso data) and the perso engine that writes cards over SCP03."""
