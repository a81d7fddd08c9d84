"""Background work: purges now; metadata refresh, dormant sweep, webhook delivery later."""
