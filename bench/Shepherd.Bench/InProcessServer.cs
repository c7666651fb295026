using System.Net.Http.Headers;
using Microsoft.Extensions.Logging;
using Shepherd.Engine;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Server;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// A Shepherd server hosted in the bench process on 127.0.0.1, with one gateway key and a fresh
/// SQLite store in a temp folder, sending to a simulator hosted here too; a client that presents
/// the key. Disposing stops both and removes the folder.
/// </summary>
internal sealed class InProcessServer : IAsyncDisposable
{
    private readonly string _folder;

    private InProcessServer(string folder, SimulatorServer simulator, ShepherdServer server)
    {
        _folder = folder;
        Simulator = simulator;
        Server = server;
        Http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(10) }) { BaseAddress = server.BaseUrl };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-bench");
    }

    public SimulatorServer Simulator { get; }

    public ShepherdServer Server { get; }

    /// <summary>A client of the server, with the gateway key.</summary>
    public HttpClient Http { get; }

    /// <summary>
    /// Starts the simulator and the server; the dispatcher sends <paramref name="concurrency"/> at
    /// a time from the start, within the upstream's <paramref name="limits"/> (none set: learned
    /// from the simulator's headers).
    /// </summary>
    public static async Task<InProcessServer> StartAsync(SimulatorOptions simulatorOptions, int concurrency, Action<ServerOptions>? configure = null, LaneLimits? limits = null)
    {
        var folder = Path.Combine(Path.GetTempPath(), "shepherd-bench", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        var simulator = await SimulatorServer.StartAsync(new SimulatedProvider(simulatorOptions, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
        var options = new ServerOptions { Urls = ["http://127.0.0.1:0"], GatewayKeys = [new GatewayKey(new Secret("sk-bench"), "bench")] };
        configure?.Invoke(options);
        var server = await ShepherdServer.StartAsync(
            options,
            new ShepherdEngineOptions
            {
                Store = new SqliteStoreOptions { Path = Path.Combine(folder, "shepherd.db") },
                Upstreams = [new UpstreamOptions { Name = "sim", BaseUrl = new Uri(simulator.BaseUrl, "v1"), ApiKey = new Secret("sk-upstream"), Limits = limits ?? new() }],
                Dispatch = new() { Concurrency = concurrency, InitialConcurrency = concurrency },
            },
            (builder, _) => builder.Logging.ClearProviders(),
            CancellationToken.None);
        return new InProcessServer(folder, simulator, server);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        await Simulator.DisposeAsync();
        Directory.Delete(_folder, recursive: true);
    }
}
