using Shepherd.Simulator;

namespace Shepherd.Testing;

/// <summary>Simulated providers for tests: in-process, or over real HTTP on 127.0.0.1.</summary>
public static class Simulators
{
    public static SimulatedProvider Create(SimulatorOptions? options = null, TimeProvider? time = null, int seed = 1) =>
        new(options ?? new SimulatorOptions(), time ?? TimeProvider.System, new Random(seed));

    public static Task<SimulatorServer> StartHttpAsync(SimulatorOptions? options = null, int seed = 1) =>
        SimulatorServer.StartAsync(Create(options, seed: seed), 0, CancellationToken.None);
}
