"""Pure logic: NejumiEvaluation → Job (`job`), observations → status (`status`). No API calls here."""
