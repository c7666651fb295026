using Shepherd.Engine;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Server;

/// <summary>What the server listens on, who may call it, and how large inputs may be.</summary>
public sealed class ServerOptions
{
    /// <summary>
    /// The addresses to listen on.
    /// <value>The default is <c>http://127.0.0.1:8080</c>.</value>
    /// </summary>
    public IReadOnlyList<string> Urls { get; set; } = ["http://127.0.0.1:8080"];

    /// <summary>
    /// The keys clients must present (<c>Authorization: Bearer</c> or <c>x-api-key</c>); each key
    /// is its own tenant and sees only its own files and batches. Empty lets anyone in as one tenant.
    /// </summary>
    public IReadOnlyList<GatewayKey> GatewayKeys { get; set; } = [];

    /// <summary>
    /// The largest file upload.
    /// <value>The default is 200 MB.</value>
    /// </summary>
    public long MaxUploadBytes { get; set; } = 200L * 1024 * 1024;

    /// <summary>
    /// The most requests in one uploaded batch file.
    /// <value>The default is 50,000.</value>
    /// </summary>
    public long MaxFileRequests { get; set; } = 50_000;

    /// <summary>
    /// The largest body of an inline or Anthropic create call.
    /// <value>The default is 256 MB.</value>
    /// </summary>
    public long MaxCreateBodyBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// The most requests in one inline or Anthropic create call.
    /// <value>The default is 100,000.</value>
    /// </summary>
    public long MaxCreateRequests { get; set; } = 100_000;

    /// <summary>
    /// The largest body of any other call.
    /// <value>The default is 1 MB.</value>
    /// </summary>
    public long MaxSmallBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// The largest body of a realtime call (<c>POST /v1/chat/completions</c> and the door's other routes).
    /// <value>The default is 32 MB, room for images given inline.</value>
    /// </summary>
    public long MaxCallBodyBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>
    /// How long a realtime call waits for its answer when its SDK does not say (the OpenAI and
    /// Anthropic SDKs send their timeout in <c>x-stainless-timeout</c>; a longer one is cut to
    /// this): transient failures are tried again within it.
    /// <value>The default is 10 minutes, the OpenAI SDK's own.</value>
    /// </summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The most calls that can wait one batch collects before it starts.
    /// <value>The default is 1,000.</value>
    /// </summary>
    public int CallCollectSize { get; set; } = 1000;

    /// <summary>
    /// The longest a batch of calls that can wait collects before it starts; a tenth of the time
    /// its first call's deadline leaves, when that is shorter.
    /// <value>The default is 1 minute.</value>
    /// </summary>
    public TimeSpan CallCollectAge { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Where traces go: an OpenTelemetry collector's OTLP endpoint, gRPC (such as
    /// <c>http://127.0.0.1:4317</c>) or HTTP when the url ends in <c>/v1/traces</c> (such as
    /// <c>http://127.0.0.1:4318/v1/traces</c>). Null, the default, sends no traces anywhere.
    /// </summary>
    public Uri? OtlpEndpoint { get; set; }

    /// <summary>
    /// The mode a batch runs in when its create names none, by the door it comes in by:
    /// <see cref="BatchDoor.OpenAI"/> (file batches), <see cref="BatchDoor.Inline"/> and
    /// <see cref="BatchDoor.Anthropic"/>. A door not listed gives <see cref="BatchMode.Auto"/> to a
    /// batch with a deadline that an upstream's batch API or flex tier serves, and
    /// <see cref="BatchMode.Realtime"/> to the others.
    /// <value>The default is empty: no door has a mode of its own.</value>
    /// </summary>
    public IReadOnlyDictionary<BatchDoor, BatchMode> DefaultModes { get; set; } = new Dictionary<BatchDoor, BatchMode>();

    /// <summary>
    /// The answer cache: answers kept by tenant, across batches, so a request a tenant sent before
    /// is answered again at no cost. Batches use it unless their create says <c>cache: false</c>
    /// (metadata <c>shepherd_cache</c> on the OpenAI door).
    /// <value>The default is null: no cache, every request is sent.</value>
    /// </summary>
    public ServerCacheOptions? AnswerCache { get; set; }

    /// <summary>A checked copy of these options; throws <see cref="ArgumentException"/> saying what is wrong.</summary>
    public ServerOptions Validated()
    {
        if (Urls.Count == 0)
        {
            throw new ArgumentException("The server needs at least one url to listen on.", nameof(Urls));
        }

        foreach (var url in Urls)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                throw new ArgumentException($"'{url}' is not an http or https url to listen on.", nameof(Urls));
            }
        }

        if (GatewayKeys.Any(k => k.Empty))
        {
            throw new ArgumentException("A gateway key cannot be empty.", nameof(GatewayKeys));
        }

        if (GatewayKeys.DistinctBy(k => k.KeySha256, StringComparer.Ordinal).Count() != GatewayKeys.Count)
        {
            throw new ArgumentException("A gateway key is listed twice.", nameof(GatewayKeys));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxUploadBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFileRequests, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCreateBodyBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCreateRequests, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSmallBodyBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCallBodyBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(CallTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(CallCollectSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(CallCollectAge, TimeSpan.Zero);
        if (OtlpEndpoint is { } otlp && (!otlp.IsAbsoluteUri || otlp.Scheme is not ("http" or "https")))
        {
            throw new ArgumentException($"The OTLP endpoint '{otlp}' is not an absolute http or https url.", nameof(OtlpEndpoint));
        }

        if (DefaultModes.ContainsKey(BatchDoor.Run))
        {
            throw new ArgumentException("Batches of shepherd run come in by no door of the server: only the OpenAI, Inline and Anthropic doors take a default mode.", nameof(DefaultModes));
        }

        if (AnswerCache is { Limits: var limits } && (limits.MaxBytes < 1 || limits.MaxAge <= TimeSpan.Zero))
        {
            throw new ArgumentException("The answer cache needs room for at least one byte, kept for more than no time.", nameof(AnswerCache));
        }

        var copy = (ServerOptions)MemberwiseClone();
        copy.DefaultModes = new Dictionary<BatchDoor, BatchMode>(DefaultModes);
        return copy;
    }
}

/// <summary>Where a server keeps its answer cache, how large it may grow, and whether sampled answers are replayed.</summary>
public sealed record ServerCacheOptions
{
    /// <summary>
    /// A SQLite file for the cache.
    /// <value>The default, null, keeps it in a shared store's PostgreSQL database, or beside an
    /// embedded store's file (<c>STATE.answers.db</c>).</value>
    /// </summary>
    public string? Path { get; init; }

    /// <summary>
    /// How large and old it may grow.
    /// <value>The default is <see cref="AnswerCacheLimits.Default"/>.</value>
    /// </summary>
    public AnswerCacheLimits Limits { get; init; } = AnswerCacheLimits.Default;

    /// <summary>
    /// Whether a batch that does not say replays the kept answer of a request that asks for
    /// sampling (temperature above 0, <c>n</c> above 1), rather than sending it again.
    /// <value>The default is true.</value>
    /// </summary>
    public bool ReplaySampled { get; init; } = true;

    /// <summary>
    /// The SQLite file the cache is kept in for the store of <paramref name="engine"/>: <see cref="Path"/>,
    /// or one beside an embedded store's (<c>STATE.answers.db</c>); null for a shared store's database.
    /// </summary>
    public string? FileFor(ShepherdEngineOptions engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return Path ?? (engine is { SharedStore: null, Store: { } store } ? System.IO.Path.ChangeExtension(System.IO.Path.GetFullPath(store.Path), ".answers.db") : null);
    }

    /// <summary>Opens (or makes) the cache where <see cref="FileFor"/> says: a SQLite file, or the shared store's database.</summary>
    public async Task<AnswerCache> OpenAsync(ShepherdEngineOptions engine, TimeProvider time, CancellationToken cancellationToken) =>
        FileFor(engine) is { } path
            ? await SqliteAnswerCache.OpenAsync(path, Limits.MaxBytes, Limits.MaxAge, time, cancellationToken)
            : await PostgresAnswerCache.OpenAsync(engine.SharedStore ?? throw new ArgumentException("The engine has no store.", nameof(engine)), Limits.MaxBytes, Limits.MaxAge, time, cancellationToken);
}
