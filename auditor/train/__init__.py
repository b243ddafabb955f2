"""Make a grounder: box datasets -> chat-format SFT corpus -> curation -> LoRA fine-tune -> verified merge.

The `train` extra (``pip install 'cxr-draft-auditor[models,train]'``) holds what only training needs
(peft). Nothing here is imported by `serve` or the audit path: the command line registers the
subcommands and every heavy import happens inside the command that needs it. The merged folder is an
ordinary checkpoint for ``CXR_AUDITOR_GROUNDER_MODEL``, trained on the same prompt, labels and box
format that recovery reads, so `eval grounding` and `serve` judge it by the same contracts.
"""
