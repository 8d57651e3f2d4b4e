"""Stage 5, submissions: validated files with provenance, public scores, the final pick, reproduction."""
