"""The audit pass: Grad-CAM, where each map cell looks, the audit tables and streamed moments."""
