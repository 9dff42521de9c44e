"""NemotronH models built from a recipe's ``model`` section."""
