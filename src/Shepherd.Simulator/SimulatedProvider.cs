using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Shepherd.Simulator.Batches;

namespace Shepherd.Simulator;

/// <summary>
/// A provider that answers chat completions, completions, embeddings, responses and Anthropic
/// messages with realistic shapes and usage counts, the same answer for the same request. It
/// enforces request and token limits per second as real providers do (429 with
/// <c>retry-after</c>, <c>retry-after-ms</c> and rate-limit headers), injects faults at the
/// configured rates, refuses some flex-tier requests, and runs OpenAI batches (with their files)
/// and Anthropic message batches on its own clock. Transports (an in-process handler, a Kestrel
/// server) wrap it.
/// </summary>
public sealed partial class SimulatedProvider
{
    private static readonly string[] Words =
    [
        "the", "product", "works", "well", "battery", "life", "is", "great", "price", "fair", "delivery", "was", "fast",
        "quality", "could", "be", "better", "sentiment", "positive", "negative", "neutral", "topics", "include", "design",
        "support", "screen", "sound", "comfort", "value", "durable", "light", "easy", "to", "use", "setup", "packaging",
        "recommend", "return", "customer", "service", "feature", "key", "summary", "overall", "and", "with", "for", "very",
    ];

    private readonly SimulatorOptions _options;
    private readonly TimeProvider _time;

    /// <summary>The clock the provider answers by; a transport paces a stream's events by it.</summary>
    internal TimeProvider Time => _time;
    private readonly Random _random;
    private readonly object _gate = new();
    private readonly ProviderLimiter _limits;
    private readonly ConcurrentDictionary<ulong, int> _received = new();
    private readonly ConcurrentDictionary<ulong, int> _executed = new();
    private readonly ConcurrentDictionary<int, long> _byStatus = new();
    private long _requestCount;
    private long _inFlight;
    private long _peakInFlight;
    private long _waitingOnTheClock;
    private long _resets;
    private long _hangs;
    private long _duplicates;
    private long _flexRequests;
    private long _flexRefusals;
    private long _streamsCut;

    /// <summary>Creates a simulator; the options are copied.</summary>
    public SimulatedProvider(SimulatorOptions options, TimeProvider timeProvider, Random random)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(random);
        _options = options.Validated();
        _time = timeProvider;
        _random = random;
        _limits = new ProviderLimiter(_options);
        _batches = new BatchApis(this, _options, _time);
    }

    /// <summary>Raised for every request received, before it is answered, with the total so far.</summary>
    public event Action<long>? RequestReceived;

    /// <summary>The key under which a body is counted in <see cref="ReceivedCounts"/>.</summary>
    public static ulong KeyOf(ReadOnlySpan<byte> body)
    {
        // FNV-1a: stable across processes, unlike string hash codes.
        var hash = 14695981039346656037UL;
        foreach (var b in body)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        return hash;
    }

    /// <summary>
    /// While true, the provider is down: every connection is dropped at once, as when a host
    /// is unreachable. Nothing is counted against the limits.
    /// </summary>
    public bool Down { get; set; }

    /// <summary>How often each body (by <see cref="KeyOf"/>) has been received.</summary>
    public IReadOnlyDictionary<ulong, int> ReceivedCounts() => new Dictionary<ulong, int>(_received);

    /// <summary>How often each body has been executed: answered 200, or taken up and left hanging (work a provider bills).</summary>
    public IReadOnlyDictionary<ulong, int> ExecutedCounts() => new Dictionary<ulong, int>(_executed);

    /// <summary>
    /// Requests that wait for the provider's clock now (their latency, or a hang): what a test on
    /// a fake clock may let time pass for. A request counts here only once its wait has begun, so
    /// the clock never moves before the request is timed by it.
    /// </summary>
    public long WaitingOnTheClock => Interlocked.Read(ref _waitingOnTheClock);

    /// <summary>A snapshot of the counters.</summary>
    public SimulatorStats Stats() => new(
        Interlocked.Read(ref _requestCount),
        Interlocked.Read(ref _inFlight),
        Interlocked.Read(ref _peakInFlight),
        new SortedDictionary<int, long>(_byStatus),
        Interlocked.Read(ref _resets),
        Interlocked.Read(ref _hangs),
        Interlocked.Read(ref _duplicates),
        _batches.Stats(),
        Interlocked.Read(ref _flexRequests),
        Interlocked.Read(ref _flexRefusals))
    {
        StreamsCut = Interlocked.Read(ref _streamsCut),
    };

    /// <summary>Counts a stream whose client left before its last event.</summary>
    internal void StreamCut() => Interlocked.Increment(ref _streamsCut);

    /// <summary>Answers one request. A hang waits until <paramref name="cancellationToken"/> is cancelled.</summary>
    public async Task<SimulatedResponse> HandleAsync(SimulatedRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var total = Interlocked.Increment(ref _requestCount);
        var inFlight = Interlocked.Increment(ref _inFlight);
        long peak;
        while (inFlight > (peak = Interlocked.Read(ref _peakInFlight)) && Interlocked.CompareExchange(ref _peakInFlight, inFlight, peak) != peak)
        {
        }

        _received.AddOrUpdate(KeyOf(request.Body), 1, (_, n) => n + 1);

        try
        {
            RequestReceived?.Invoke(total);
            if (Down)
            {
                Interlocked.Increment(ref _resets);
                return new SimulatedResponse(0, [], [], SimulatedFault.Reset);
            }

            var response = await AnswerAsync(request, cancellationToken);
            if (response.Fault == SimulatedFault.Reset)
            {
                Interlocked.Increment(ref _resets);
            }
            else
            {
                _byStatus.AddOrUpdate(response.StatusCode, 1, (_, n) => n + 1);
            }

            return response;
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task<SimulatedResponse> AnswerAsync(SimulatedRequest request, CancellationToken cancellationToken)
    {
        var anthropic = request.Path == "/v1/messages" || request.Path.StartsWith("/v1/messages/", StringComparison.Ordinal);
        var endpoint = request.Path switch
        {
            "/v1/chat/completions" or "/v1/completions" or "/v1/embeddings" or "/v1/responses" or "/v1/messages" => request.Path,
            _ => null,
        };
        if (endpoint is null && !BatchApis.Serve(request.Path))
        {
            return Error(404, anthropic, "not_found_error", $"Unknown path {request.Path}.");
        }

        if (endpoint is not null && request.Method != "POST")
        {
            return Error(405, anthropic, "invalid_request_error", $"Use POST for {request.Path}.");
        }

        if (_options.ApiKey is { } key && request.Authorization != "Bearer " + key && request.ApiKeyHeader != key)
        {
            return (_options.RefusedKeyStatus, anthropic) switch
            {
                (403, true) => Error(403, anthropic, "permission_error", "Your API key does not have permission to use the specified resource."),
                (403, false) => Error(403, anthropic, "invalid_request_error", "You are not allowed to use this model with this key.", code: "model_not_allowed"),
                (_, true) => Error(401, anthropic, "authentication_error", "invalid x-api-key"),
                _ => Error(401, anthropic, "invalid_request_error", "Incorrect API key provided. You can find your API key in your account settings.", code: "invalid_api_key"),
            };
        }

        if (endpoint is null)
        {
            return await _batches.AnswerAsync(request, cancellationToken);
        }

        if (Inspect(request.Body, anthropic, out var inspected) is { } refused)
        {
            return refused;
        }

        var shape = inspected.Shape;
        var maxTokens = shape.MaxTokens ?? _options.DefaultMaxTokens;
        var now = _time.GetUtcNow();
        var limitHeaders = new List<KeyValuePair<string, string>>();
        double roll;
        TimeSpan latency;
        bool cacheRead;
        lock (_gate)
        {
            if (shape.Flex && HasFlexTier(endpoint))
            {
                Interlocked.Increment(ref _flexRequests);
                if (_options.FlexUnavailableRate > 0 && _random.NextDouble() < _options.FlexUnavailableRate)
                {
                    Interlocked.Increment(ref _flexRefusals);
                    return FlexUnavailable(inspected.Seed);
                }
            }

            cacheRead = _limits.ReadsCache(shape);
            var prompt = _limits.PromptCost(shape, cacheRead);
            var wait = _limits.Admit(prompt, maxTokens, now);
            if (wait > TimeSpan.Zero)
            {
                _limits.AddHeaders(limitHeaders, anthropic, now);
                return RateLimited(anthropic, wait, limitHeaders, (long)Math.Ceiling(prompt) + maxTokens);
            }

            if (!_options.HeadersWhenAnswered)
            {
                _limits.AddHeaders(limitHeaders, anthropic, now);
            }

            roll = _random.NextDouble();
            latency = _options.Latency + (_options.Jitter * ((_random.NextDouble() * 2) - 1));
        }

        if (latency > TimeSpan.Zero)
        {
            await WaitOnTheClockAsync(latency, cancellationToken);
        }

        if ((roll -= _options.ResetRate) < 0)
        {
            return new SimulatedResponse(0, [], [], SimulatedFault.Reset);
        }

        if ((roll -= _options.HangRate) < 0)
        {
            Interlocked.Increment(ref _hangs);
            Executed(request.Body);
            await WaitOnTheClockAsync(Timeout.InfiniteTimeSpan, cancellationToken);
        }

        if ((roll -= _options.Error500Rate) < 0)
        {
            return InternalError(anthropic, WithRetryAfter(limitHeaders));
        }

        if ((roll -= _options.Error502Rate) < 0)
        {
            return new SimulatedResponse(502, WithRetryAfter([]),
                "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"u8.ToArray());
        }

        if (ServerFault(roll, anthropic, limitHeaders) is { } fault)
        {
            return fault with { Headers = WithRetryAfter(limitHeaders) };
        }

        inspected = inspected with { Fate = Fate(roll - _options.Error503Rate - _options.Error529Rate, 1 - _options.FaultRate) };

        var outputTokens = OutputTokens(shape, inspected.Seed, endpoint);
        lock (_gate)
        {
            // What was charged for output beyond what the answer holds goes back to an output-token limit.
            _limits.Settle(maxTokens, outputTokens, _time.GetUtcNow());
            if (_options.HeadersWhenAnswered)
            {
                _limits.AddHeaders(limitHeaders, anthropic, _time.GetUtcNow());
            }
        }

        var requestId = $"req_{inspected.Seed:x16}{Interlocked.Read(ref _requestCount):x}";
        limitHeaders.Add(new(anthropic ? "request-id" : "x-request-id", requestId));
        if (!anthropic)
        {
            limitHeaders.Add(new("openai-processing-ms", ((long)latency.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)));
        }

        Executed(request.Body);
        // An embedding has nothing to stream: its answer is whole, as the provider sends it.
        return inspected.Shape.Stream && endpoint != "/v1/embeddings"
            ? Stream(limitHeaders, Streamed(endpoint, _options.StreamWithoutUsage ? inspected.Shape with { StreamUsage = false } : inspected.Shape, inspected.Seed, UsageOf(inspected, outputTokens, cacheRead), now, StructuredText(inspected)))
            : new SimulatedResponse(200, limitHeaders, Served(endpoint, inspected, outputTokens, cacheRead, now, out _));
    }

    /// <summary>
    /// Reads a request body the way the provider would run it; answers 400 (as the refusal) for
    /// a body that is not JSON, names no model, or holds more than the context.
    /// </summary>
    private SimulatedResponse? Inspect(byte[] body, bool anthropic, out Inspected inspected)
    {
        inspected = default;
        RequestShape? shape;
        try
        {
            using var document = JsonDocument.Parse(body);
            shape = RequestShape.Read(document.RootElement);
        }
        catch (JsonException ex)
        {
            return Error(400, anthropic, "invalid_request_error", $"The body is not valid JSON: {ex.Message}");
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or OverflowException or ArgumentException)
        {
            // Text that is not Unicode, a number no type holds: a provider refuses the request, it does not fail.
            return Error(400, anthropic, "invalid_request_error", $"The body cannot be read: {ex.Message}");
        }

        if (shape is null)
        {
            return Error(400, anthropic, "invalid_request_error", "The body must be a JSON object with a string \"model\".");
        }

        var promptTokens = PromptTokens(shape);
        if (promptTokens > _options.ContextTokens)
        {
            return Error(400, anthropic, "invalid_request_error",
                $"The prompt holds {promptTokens} tokens; this model's context holds {_options.ContextTokens}.", code: "context_length_exceeded");
        }

        inspected = new Inspected(shape, KeyOf(body), promptTokens);
        return null;
    }

    /// <summary>A request the provider runs: what it reads, the seed of its answer, and its prompt's real tokens.</summary>
    private readonly record struct Inspected(RequestShape Shape, ulong Seed, int PromptTokens)
    {
        /// <summary>How its structured answer comes out, if it asks for one.</summary>
        public StructuredFate Fate { get; init; }
    }

    /// <summary>
    /// How a structured answer comes out, from what is left of the roll that chose the faults
    /// (<paramref name="left"/>, of <paramref name="room"/>): broken JSON and broken schemas at
    /// their shares of the answers.
    /// </summary>
    private StructuredFate Fate(double left, double room)
    {
        var share = room > 0 ? left / room : 0;
        return share < _options.BrokenJsonRate ? StructuredFate.BrokenJson
            : share < _options.BrokenJsonRate + _options.SchemaBreakRate ? StructuredFate.BreaksSchema
            : StructuredFate.Valid;
    }

    /// <summary>
    /// The 503 or 529 a roll left after the faults before them lands on, or null: the server
    /// errors a realtime request and a batch line both meet.
    /// </summary>
    private SimulatedResponse? ServerFault(double roll, bool anthropic, List<KeyValuePair<string, string>> headers)
    {
        if ((roll -= _options.Error503Rate) < 0)
        {
            return Error(503, anthropic, "api_error", "The engine is currently overloaded, please try again later.", headers);
        }

        return (roll - _options.Error529Rate) < 0 ? Error(529, anthropic, "overloaded_error", "Overloaded.", headers) : null;
    }

    /// <summary>The body of a successful answer, and the usage it reports: a structured answer's output is its JSON, at four characters a token.</summary>
    private static byte[] Served(string endpoint, Inspected request, int outputTokens, bool cacheRead, DateTimeOffset now, out Usage usage)
    {
        var structured = StructuredText(request);
        var reported = usage = UsageOf(request, structured is null ? outputTokens : Math.Max(1, structured.Length / 4), cacheRead);
        return Write(json => WriteAnswer(json, endpoint, request.Shape, request.Seed, reported, now, structured));
    }

    /// <summary>The JSON a structured request is answered with (as its fate has it); null for free text.</summary>
    private static string? StructuredText(Inspected request) =>
        request.Shape.Structured is { } ask ? StructuredAnswers.Make(ask, request.Seed, request.Fate) : null;

    /// <summary>The usage an answer of <paramref name="outputTokens"/> to <paramref name="request"/> reports: its prompt less a cacheable prefix, which it wrote to the cache or read from it.</summary>
    private static Usage UsageOf(Inspected request, int outputTokens, bool cacheRead)
    {
        var shape = request.Shape;
        var cached = shape.CacheableText.Length == 0 ? 0 : ProviderLimiter.RealTokens(shape.CacheableText);
        return new Usage(request.PromptTokens - cached, outputTokens, cacheRead ? 0 : cached, cacheRead ? cached : 0);
    }

    private async Task WaitOnTheClockAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        // The delay's timer is made before the request counts as waiting: a fake clock moved in between would not time it.
        var delay = Task.Delay(wait, _time, cancellationToken);
        Interlocked.Increment(ref _waitingOnTheClock);
        try
        {
            await delay;
        }
        finally
        {
            Interlocked.Decrement(ref _waitingOnTheClock);
        }
    }

    private void Executed(byte[] body) => Executed(KeyOf(body));

    /// <summary>Counts an execution of the body of key <paramref name="key"/>: billed work, and a duplicate when it was done before.</summary>
    private void Executed(ulong key)
    {
        if (_executed.AddOrUpdate(key, 1, (_, n) => n + 1) > 1)
        {
            Interlocked.Increment(ref _duplicates);
        }
    }

    /// <summary>
    /// What the limiter of a provider with <paramref name="options"/> counts for a request against
    /// a single token limit: its prompt by the options' counting rule, plus its output limit (the
    /// options' default when it names none). Cache reads are not left out.
    /// </summary>
    public static double CostOf(ReadOnlySpan<byte> body, SimulatorOptions? options = null)
    {
        options ??= new SimulatorOptions();
        var reader = new Utf8JsonReader(body);
        using var document = JsonDocument.ParseValue(ref reader);
        return RequestShape.Read(document.RootElement) is { } shape
            ? new ProviderLimiter(options).PromptCost(shape, cacheRead: false) + (shape.MaxTokens ?? options.DefaultMaxTokens)
            : 0;
    }

    /// <summary>The prompt's real tokens, as usage reports them: o200k tokens of its text, plus a few per message of chat formatting.</summary>
    private static int PromptTokens(RequestShape shape) => ProviderLimiter.RealTokens(shape.Text) + (shape.Messages * 3) + (shape.Messages > 0 ? 3 : 0);

    private int OutputTokens(RequestShape shape, ulong seed, string endpoint) =>
        endpoint == "/v1/embeddings" ? 0 : Math.Min(shape.MaxTokens ?? _options.DefaultMaxTokens, 12 + (int)(seed % 52));

    /// <summary>What an answer's usage reports: input not from the cache, output, and the cache written or read.</summary>
    private readonly record struct Usage(int Input, int Output, int CacheWrite, int CacheRead);
}
