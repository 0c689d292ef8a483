"""Built-in schedulers, one module per backend, each registered under the
``jobbridge.schedulers`` entry-point group like any third-party scheduler."""
