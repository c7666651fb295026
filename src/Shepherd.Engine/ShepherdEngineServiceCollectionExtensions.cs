using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Cluster;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine;

/// <summary>Everything the engine is built from.</summary>
public sealed class ShepherdEngineOptions
{
    /// <summary>The embedded store; one of it and <see cref="SharedStore"/> is set.</summary>
    public SqliteStoreOptions? Store { get; init; }

    /// <summary>The PostgreSQL store several nodes share; one of it and <see cref="Store"/> is set.</summary>
    public PostgresStoreOptions? SharedStore { get; init; }

    /// <summary>The upstreams requests go to; several may serve one model (failover, weights).</summary>
    public IReadOnlyList<UpstreamOptions> Upstreams { get; init; } = [new UpstreamOptions()];

    /// <summary>How requests are sent.</summary>
    public DispatchOptions Dispatch { get; init; } = new();

    /// <summary>What inputs may hold.</summary>
    public ImportOptions Import { get; init; } = new();

    /// <summary>How batches in native mode are handed to providers' own batch APIs.</summary>
    public NativeBatchOptions Native { get; init; } = new();

    /// <summary>
    /// The prices answers are costed with.
    /// <value>The default is <see cref="PriceTable.BuiltIn"/>.</value>
    /// </summary>
    public PriceTable Prices { get; init; } = PriceTable.BuiltIn;
}

/// <summary>Registers the engine with a service collection.</summary>
public static class ShepherdEngineServiceCollectionExtensions
{
    /// <summary>
    /// Adds the store, the upstream client (over a pooled <see cref="HttpClient"/> from
    /// <see cref="IHttpClientFactory"/>), the importer and the dispatcher. Returns the upstream's
    /// HTTP client builder, so a caller can replace its primary handler (the simulator does).
    /// An <see cref="IBatchStore"/> already registered is used instead of one made from the options.
    /// </summary>
    public static IHttpClientBuilder AddShepherdEngine(this IServiceCollection services, ShepherdEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
#pragma warning disable RS0030 // The composition root is where the process-wide randomizer is made; logic takes it injected.
        services.TryAddSingleton(_ => new Random());
#pragma warning restore RS0030
        services.AddLogging();
        // A store the caller registered first (one it opened itself, to read it before the engine
        // was built) is the engine's store; the caller owns and disposes it.
        services.TryAddSingleton<IBatchStore>(sp => options.SharedStore is { } shared
            ? new PostgresBatchStore(shared, sp.GetRequiredService<TimeProvider>())
            : new SqliteBatchStore(options.Store ?? throw new ArgumentException("The engine needs a store: set Store or SharedStore.", nameof(options)), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new BatchImporter(sp.GetRequiredService<IBatchStore>(), options.Import.WithContextWindows(options.Prices, sp.GetRequiredService<TokenEstimator>())));
        services.AddSingleton<TokenEstimator>();
        services.AddSingleton<IReadOnlyList<UpstreamClient>>(sp => [.. options.Upstreams.Select(upstream => new UpstreamClient(
            sp.GetRequiredService<IHttpClientFactory>().CreateClient(UpstreamClient.HttpClientName),
            upstream,
            sp.GetRequiredService<TimeProvider>()))]);
        services.AddMetrics();
        services.AddSingleton(sp =>
        {
            var dispatcher = new Dispatcher(
                sp.GetRequiredService<IBatchStore>(),
                sp.GetRequiredService<IReadOnlyList<UpstreamClient>>(),
                options.Dispatch,
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<Random>(),
                sp.GetRequiredService<TokenEstimator>(),
                options.Prices,
                sp.GetRequiredService<ILogger<Dispatcher>>());
            dispatcher.Telemetry = new DispatchTelemetry(sp.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), dispatcher);
            return dispatcher;
        });
        services.AddSingleton(sp => new NativeBatchRunner(
            sp.GetRequiredService<IBatchStore>(),
            sp.GetRequiredService<IReadOnlyList<UpstreamClient>>(),
            sp.GetRequiredService<IHttpClientFactory>().CreateClient(UpstreamClient.HttpClientName),
            options.Native,
            options.Dispatch,
            sp.GetRequiredService<TimeProvider>(),
            options.Prices,
            sp.GetRequiredService<TokenEstimator>(),
            sp.GetRequiredService<ILogger<NativeBatchRunner>>(),
            sp.GetRequiredService<ClusterNode>())
        {
            // The planner counts on realtime at the rates the dispatcher's lanes know.
            RealtimeRate = sp.GetRequiredService<Dispatcher>().RequestsPerSecond,
            Telemetry = sp.GetRequiredService<Dispatcher>().Telemetry,
            Holds = sp.GetRequiredService<Dispatcher>().Holds,
        });
        services.AddSingleton(sp => new ClusterNode(
            sp.GetRequiredService<IBatchStore>(),
            sp.GetRequiredService<Dispatcher>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<ClusterNode>>()));

        var concurrency = options.Dispatch.Concurrency * Math.Max(1, options.Upstreams.Count);
        return services.AddHttpClient(UpstreamClient.HttpClientName, http => http.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
                ConnectTimeout = TimeSpan.FromSeconds(30),
                MaxConnectionsPerServer = Math.Max(concurrency, 1),
                AutomaticDecompression = DecompressionMethods.All,
                EnableMultipleHttp2Connections = true,
                // A provider that redirects a request is misconfigured (a wrong base url): its answer is
                // recorded as it came, rather than the prompt sent on to wherever the redirect points.
                AllowAutoRedirect = false,
                // An answer left unread (a realtime stream whose caller went away) closes its
                // connection at once, which ends the provider's work on it, rather than being read
                // to its end to keep the connection; every other answer is read whole.
                MaxResponseDrainSize = 0,
            })
            // The handler recycles its own connections (PooledConnectionLifetime), so the factory need not.
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan)
            // The dispatcher logs what matters per item; per-request HTTP logging costs two handlers
            // on the hot path and would put request urls and headers within reach of a log level.
            .RemoveAllLoggers();
    }
}
