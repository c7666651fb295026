using BenchmarkDotNet.Running;

// Runs the benchmarks the arguments pick, e.g. `--filter '*'` for all or `--list flat` to list them.
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
