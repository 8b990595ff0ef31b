"""Built-in tasks: an LSTM regressor on generated time series, and a sleep task for benchmarks."""
