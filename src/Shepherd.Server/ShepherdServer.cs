using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shepherd.Engine;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Shepherd.Server.Anthropic;
using Shepherd.Server.Batches;
using Shepherd.Server.Dashboard;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;
using Shepherd.Server.OpenAI;

namespace Shepherd.Server;

/// <summary>
/// The Shepherd server: the OpenAI files and batches API, the Anthropic Message Batches API and
/// inline batches, all over one engine that runs inside it. On start it resumes every
/// unfinished batch; on stop, requests in flight are abandoned and run again after a restart.
/// </summary>
public sealed class ShepherdServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ShepherdServer(WebApplication app, IReadOnlyList<Uri> urls)
    {
        _app = app;
        Urls = urls;
    }

    /// <summary>The addresses the server listens on, with the ports it got (when 0 was asked for).</summary>
    public IReadOnlyList<Uri> Urls { get; }

    /// <summary>The first address, such as <c>http://127.0.0.1:8080/</c>; OpenAI clients append <c>v1</c>.</summary>
    public Uri BaseUrl => Urls[0];

    /// <summary>The server's services, such as the store and the dispatcher.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>The category the generic host logs its start and its hosted services' failures under.</summary>
    private const string HostCategory = "Microsoft.Extensions.Hosting.Internal.Host";

    /// <summary>
    /// Opens the store, recovers what a previous run left unfinished, and starts listening.
    /// <paramref name="configure"/> may add to the host (logging, a time provider, the
    /// upstream HTTP handler) before it is built.
    /// </summary>
    public static async Task<ShepherdServer> StartAsync(
        ServerOptions options,
        ShepherdEngineOptions engine,
        Action<WebApplicationBuilder, IHttpClientBuilder>? configure,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(engine);
        var settings = options.Validated();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // A server that cannot start (a port in use) throws to the caller, which says why in one
        // line; the host's own log of it (with every frame of the stack) is left out until it runs.
        var started = false;
        builder.Logging.AddFilter(HostCategory, level => level >= LogLevel.Warning && (started || level < LogLevel.Error));
        builder.WebHost.UseUrls([.. settings.Urls]);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = settings.MaxSmallBodyBytes;
        });
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(10));
        var upstreams = builder.Services.AddShepherdEngine(engine);
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton(new ServerPaths(engine));
        builder.Services.AddSingleton<BackgroundImports>();
        builder.Services.AddSingleton<BatchFinalizer>();
        builder.Services.AddSingleton<BatchWatch>();
        builder.Services.AddSingleton(sp => CreateImporters(sp.GetRequiredService<IBatchStore>(), engine, settings, sp.GetRequiredService<TokenEstimator>()));
        builder.Services.AddSingleton<BatchService>();
        builder.Services.AddSingleton<FileService>();
        builder.Services.AddSingleton<CreateBodies>();
        builder.Services.AddSingleton<FilesApi>();
        builder.Services.AddSingleton<BatchesApi>();
        builder.Services.AddSingleton(sp => new EstimateApi(
            sp.GetRequiredService<FileService>(),
            sp.GetRequiredService<CreateBodies>(),
            sp.GetRequiredService<BatchService>(),
            sp.GetRequiredService<Dispatcher>(),
            new BatchEstimator(engine.Prices, sp.GetRequiredService<TokenEstimator>()),
            engine.Upstreams,
            engine.Native));
        builder.Services.AddSingleton<MessageBatchesApi>();
        builder.Services.AddSingleton<Gateway.DeadlineCalls>();
        builder.Services.AddSingleton<Gateway.GatewayApi>();
        builder.Services.AddSingleton<Gateway.RealtimeLedger>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Gateway.RealtimeLedger>());
        builder.Services.AddSingleton<DashboardApi>();
        builder.Services.AddSingleton(sp => new ServerAnswerCache(settings, engine, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ServerAnswerCache>>()));
        builder.Services.AddSingleton<EngineService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<EngineService>());
        AddTelemetry(builder, settings);
        configure?.Invoke(builder, upstreams);

        var app = builder.Build();
        try
        {
            await app.Services.GetRequiredService<IBatchStore>().InitializeAsync(cancellationToken);
            await app.Services.GetRequiredService<BatchService>().RecoverAsync(cancellationToken);
            await app.Services.GetRequiredService<Gateway.DeadlineCalls>().RecoverAsync(cancellationToken);
            app.UseMiddleware<ApiMiddleware>();
            app.MapGet("/health", () => Results.Text("ok"));
            app.MapGet("/healthz", () => Results.Text("ok"));
            app.MapGet("/readyz", ReadyAsync);
            app.MapPrometheusScrapingEndpoint("/metrics");
            app.Services.GetRequiredService<DashboardApi>().Map(app);
            app.Services.GetRequiredService<FilesApi>().Map(app);
            app.Services.GetRequiredService<BatchesApi>().Map(app);
            app.Services.GetRequiredService<EstimateApi>().Map(app);
            app.Services.GetRequiredService<MessageBatchesApi>().Map(app);
            app.Services.GetRequiredService<Gateway.GatewayApi>().Map(app);
            app.MapFallback((HttpContext context) =>
                throw ApiException.NotFound($"There is no {context.Request.Method} {context.Request.Path} on this server."));
            await app.StartAsync(cancellationToken);
            started = true;
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        return new ShepherdServer(app, [.. addresses.Select(a => new Uri(a.EndsWith('/') ? a : a + "/"))]);
    }

    /// <summary>Completes when the server has been asked to stop (by a signal or a fatal engine failure).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops listening and stops the engine; what is unfinished resumes on the next start.</summary>
    public Task StopAsync(CancellationToken cancellationToken) => _app.StopAsync(cancellationToken);

    /// <summary>Stops the server, if it still runs, and releases the store.</summary>
    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    /// <summary>
    /// Metrics for <c>/metrics</c> (Prometheus text, through OpenTelemetry): the engine's meter
    /// and ASP.NET Core's own. Traces of API calls and upstream requests go to an OTLP collector
    /// only when one is configured.
    /// </summary>
    private static void AddTelemetry(WebApplicationBuilder builder, ServerOptions settings)
    {
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("shepherd"))
            .WithMetrics(metrics => metrics
                .AddMeter(DispatchTelemetry.Name)
                .AddAspNetCoreInstrumentation()
                .AddPrometheusExporter());
        if (settings.OtlpEndpoint is { } endpoint)
        {
            telemetry.WithTracing(tracing => tracing
                .AddSource(DispatchTelemetry.Name)
                .AddAspNetCoreInstrumentation()
                .AddOtlpExporter(otlp =>
                {
                    // A collector's HTTP receiver is named by its path; anything else is its gRPC port.
                    otlp.Endpoint = endpoint;
                    otlp.Protocol = endpoint.AbsolutePath.EndsWith("/v1/traces", StringComparison.Ordinal) ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
                    otlp.BatchExportProcessorOptions.ScheduledDelayMilliseconds = 2000;
                }));
        }
    }

    /// <summary>Ready when the store answers (within 5 s) and the engine runs; 503 saying which is not.</summary>
    private static async Task<IResult> ReadyAsync(HttpContext context, BatchService batches, EngineService engine, TimeProvider time)
    {
        var problems = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5), time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, context.RequestAborted);
        try
        {
            await batches.ProbeStoreAsync(linked.Token);
        }
        catch (Exception ex) when (ex is StoreException or OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            problems.Add($"the store does not answer: {ex.Message}");
        }

        if (!engine.IsRunning)
        {
            problems.Add("the engine is not running");
        }

        return problems.Count == 0 ? Results.Text("ready") : Results.Text("not ready: " + string.Join("; ", problems), statusCode: StatusCodes.Status503ServiceUnavailable);
    }

    private static Importers CreateImporters(IBatchStore store, ShepherdEngineOptions engine, ServerOptions settings, TokenEstimator tokens)
    {
        ImportOptions Limited(long maxItems) => new ImportOptions
        {
            MaxLineBytes = engine.Import.MaxLineBytes,
            MaxErrors = engine.Import.MaxErrors,
            ChunkSize = engine.Import.ChunkSize,
            MaxItems = maxItems,
            ServesModel = engine.Import.ServesModel ?? (model => engine.Upstreams.Any(u => u.Serves(model))),
            ContextWindows = engine.Import.ContextWindows,
        }.WithContextWindows(engine.Prices, tokens);

        return new Importers(
            new BatchImporter(store, Limited(settings.MaxFileRequests)),
            new BatchImporter(store, Limited(settings.MaxCreateRequests)),
            engine.Import.MaxLineBytes);
    }
}
