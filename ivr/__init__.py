"""IVR: FastAGI server and AGI-script entry running declarative, CRM-aware call flows; TwiML rendering."""
