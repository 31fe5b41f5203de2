"""Operations: `vigie check`, the self-check of a running installation."""
