"""The `bitbatch` command line: look at runs, retry failed ones and re-drive dead-letter messages."""
