"""Reading the dispatch log as people do: the CLI's tables and answers, the policy's
dry run, the metadata schema and the read-only dispatch-log page.

Nothing in this package is imported by the webhook function (handler.app): it is
the operator's side, and its imports are not the function's cold start.
"""
