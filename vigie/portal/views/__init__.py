"""Portal views, one module per concern. They stay thin: lookups go through
`vigie.portal.scope` (scope + audit of refusals), bytes through `vigie.portal.door`."""
