using System.CommandLine;
using Shepherd.Simulator;

namespace Shepherd.Cli.Commands;

/// <summary>
/// The options that shape the simulated provider. <c>simulate</c> takes them as they are;
/// <c>run --provider sim</c> takes them with a <c>--sim-</c> prefix.
/// </summary>
internal sealed class SimulatorOptionSet
{
    private readonly Option<int> _latency;
    private readonly Option<int> _jitter;
    private readonly RateLimitOptionSet _limits;
    private readonly ChoiceOption<TokenCounting> _count;
    private readonly Option<double> _tokenScale;
    private readonly Option<int> _messageTokens;
    private readonly Option<double> _bucketSeconds;
    private readonly Option<double?> _limitChangeAfter;
    private readonly Option<double> _limitChangeFactor;
    private readonly Option<bool> _noLimitHeaders;
    private readonly Option<bool> _streamWithoutUsage;
    private readonly Option<bool> _headersWhenAnswered;
    private readonly Option<double> _fail500;
    private readonly Option<double> _fail502;
    private readonly Option<double> _fail503;
    private readonly Option<double> _fail529;
    private readonly Option<double> _reset;
    private readonly Option<double> _hang;
    private readonly Option<int> _seed;
    private readonly Option<long?> _context;
    private readonly Option<double?> _errorRetryAfter;
    private readonly Option<double> _flexUnavailable;
    private readonly Option<double> _brokenJson;
    private readonly Option<double> _schemaBreak;
    private readonly Option<TimeSpan?> _batchLatency;
    private readonly Option<double> _batchExpire;
    private readonly Option<TimeSpan?> _batchCancelLatency;
    private readonly Option<TimeSpan?> _streamInterval;

    /// <summary>What only a simulator served over HTTP does (<c>shepherd simulate</c>): none for the in-process one of <c>run</c>.</summary>
    private readonly Option[] _overHttp;

    public SimulatorOptionSet(string prefix, int defaultLatencyMs, int defaultJitterMs)
    {
        _latency = CliOptions.Int($"--{prefix}latency", "Simulated answer time in milliseconds", defaultLatencyMs, 0, 600_000);
        _jitter = CliOptions.Int($"--{prefix}jitter", "Answer time varies by up to this many milliseconds either way", defaultJitterMs, 0, 600_000);
        _limits = new RateLimitOptionSet(prefix,
            rpm: "Requests per minute the simulator admits, enforced per second (429 beyond)",
            tpm: "Tokens per minute (prompt + max_tokens) the simulator admits, enforced per second",
            itpm: "Input tokens per minute, a limit of their own as Anthropic has it (cache reads not counted)",
            otpm: "Output tokens per minute, a limit of their own as Anthropic has it (max_tokens charged when admitted, the unwritten rest given back)");
        _count = CliOptions.Choice($"--{prefix}count", "How the limiter counts prompt text: chars (four characters a token) or o200k (real tokens)", TokenCounting.Characters,
            ("chars", TokenCounting.Characters), ("o200k", TokenCounting.O200k));
        _tokenScale = CliOptions.Number($"--{prefix}token-scale", "The limiter's count of prompt text is multiplied by this (1.5 counts half as much again)", 1, 0.01, 100);
        _messageTokens = CliOptions.Int($"--{prefix}message-tokens", "Tokens the limiter adds per chat message", 0, 0, 10_000);
        _bucketSeconds = CliOptions.Number($"--{prefix}bucket-seconds", "Seconds of its limit each bucket holds: 1 enforces it per second, 60 allows a minute's worth at once", 1, 0.05, 3600);
        _limitChangeAfter = CliOptions.OptionalSeconds($"--{prefix}limit-change-after", "Seconds after the first request when every limit changes (by --" + prefix + "limit-change-factor)", 0);
        _limitChangeFactor = CliOptions.Number($"--{prefix}limit-change-factor", "What the limits are multiplied by when they change", 0.5, 0.01, 100);
        _noLimitHeaders = new Option<bool>($"--{prefix}no-limit-headers") { Description = "Send no rate-limit headers: only 429s with retry-after tell of the limits" };
        _streamWithoutUsage = new Option<bool>($"--{prefix}stream-without-usage") { Description = "Ignore stream_options, as some OpenAI-compatible servers do: chat and completion streams never carry a usage chunk" };
        _headersWhenAnswered = new Option<bool>($"--{prefix}headers-when-answered") { Description = "Rate-limit headers tell the limits as they are when the answer is written, not when the request was admitted" };
        _fail500 = CliOptions.Share($"--{prefix}fail-500", "Share of requests answered 500");
        _fail502 = CliOptions.Share($"--{prefix}fail-502", "Share of requests answered 502 with an HTML page (a proxy's answer)");
        _fail503 = CliOptions.Share($"--{prefix}fail-503", "Share of requests answered 503");
        _fail529 = CliOptions.Share($"--{prefix}fail-529", "Share of requests answered 529 (overloaded)");
        _reset = CliOptions.Share($"--{prefix}reset", "Share of requests whose connection is reset");
        _hang = CliOptions.Share($"--{prefix}hang", "Share of requests never answered");
        _errorRetryAfter = CliOptions.OptionalSeconds($"--{prefix}error-retry-after", "5xx answers carry a retry-after of this many seconds", 0);
        _context = CliOptions.OptionalLong($"--{prefix}context-tokens", "Prompts longer than this many tokens are refused with 400 context_length_exceeded, a permanent failure", 1);
        _brokenJson = CliOptions.Share($"--{prefix}broken-json", "Share of answers to structured requests (response_format, text.format, a forced tool) whose JSON does not parse: cut off, or wrapped in words");
        _schemaBreak = CliOptions.Share($"--{prefix}schema-break", "Share of answers to structured requests whose JSON parses but breaks the schema: a required field missing, a wrong type, a field not allowed");
        _flexUnavailable = CliOptions.Share($"--{prefix}flex-unavailable", "Share of flex-tier requests (\"service_tier\":\"flex\") refused 429 resource_unavailable, without rate-limit headers");
        _batchLatency = CliOptions.Duration($"--{prefix}batch-latency", "How long a batch job (OpenAI batch, Anthropic message batch) takes; its lines finish at times spread over it (2s by default)", allowZero: true);
        _batchExpire = CliOptions.Share($"--{prefix}batch-expire", "Share of batch lines that never run and end expired");
        _batchCancelLatency = CliOptions.Duration($"--{prefix}batch-cancel-latency", "How long a cancelled batch job stays cancelling before it ends (0 by default)", allowZero: true);
        _streamInterval = CliOptions.Duration($"--{prefix}stream-interval", "Time between the events of a streamed answer (\"stream\": true) served over HTTP (0 by default: together)", allowZero: true);
        _overHttp = prefix.Length == 0 ? [_streamInterval] : [];
        _seed = CliOptions.Int($"--{prefix}seed", "Seed of the fault, jitter and batch draws", 1, int.MinValue, int.MaxValue);
    }

    public IEnumerable<Option> All => [_latency, _jitter, .. _limits.All, _count, _tokenScale, _messageTokens, _bucketSeconds, _limitChangeAfter, _limitChangeFactor, _noLimitHeaders, _streamWithoutUsage, _headersWhenAnswered, _fail500, _fail502, _fail503, _fail529, _reset, _hang, _errorRetryAfter, _context,
        _flexUnavailable, _brokenJson, _schemaBreak, _batchLatency, _batchExpire, _batchCancelLatency, .. _overHttp, _seed];

    public int Seed(ParseResult parse) => parse.GetValue(_seed);

    /// <summary>Builds the options; an impossible combination (fault shares over 1) is an error naming the flags.</summary>
    public SimulatorOptions Read(ParseResult parse)
    {
        var options = new SimulatorOptions
        {
            Latency = TimeSpan.FromMilliseconds(parse.GetValue(_latency)),
            Jitter = TimeSpan.FromMilliseconds(parse.GetValue(_jitter)),
            RequestsPerMinute = _limits.RequestsPerMinute(parse) is { } rpm ? (int)Math.Min(rpm, int.MaxValue) : null,
            TokensPerMinute = _limits.TokensPerMinute(parse),
            InputTokensPerMinute = _limits.InputTokensPerMinute(parse),
            OutputTokensPerMinute = _limits.OutputTokensPerMinute(parse),
            TokenCounting = _count.ValueIn(parse),
            TokenScale = parse.GetValue(_tokenScale),
            TokensPerMessage = parse.GetValue(_messageTokens),
            BucketSeconds = parse.GetValue(_bucketSeconds),
            LimitChangeAfter = parse.GetValue(_limitChangeAfter) is { } after ? TimeSpan.FromSeconds(after) : null,
            LimitChangeFactor = parse.GetValue(_limitChangeFactor),
            RateLimitHeaders = !parse.GetValue(_noLimitHeaders),
            StreamWithoutUsage = parse.GetValue(_streamWithoutUsage),
            HeadersWhenAnswered = parse.GetValue(_headersWhenAnswered),
            Error500Rate = parse.GetValue(_fail500),
            Error502Rate = parse.GetValue(_fail502),
            Error503Rate = parse.GetValue(_fail503),
            Error529Rate = parse.GetValue(_fail529),
            ResetRate = parse.GetValue(_reset),
            HangRate = parse.GetValue(_hang),
            ErrorRetryAfter = parse.GetValue(_errorRetryAfter) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
            ContextTokens = parse.GetValue(_context) is { } context ? (int)Math.Min(context, int.MaxValue) : null,
            FlexUnavailableRate = parse.GetValue(_flexUnavailable),
            BrokenJsonRate = parse.GetValue(_brokenJson),
            SchemaBreakRate = parse.GetValue(_schemaBreak),
            BatchExpireShare = parse.GetValue(_batchExpire),
        };
        if (parse.GetValue(_batchLatency) is { } batchLatency)
        {
            options.BatchLatency = batchLatency;
        }

        if (parse.GetValue(_batchCancelLatency) is { } cancelLatency)
        {
            options.BatchCancelLatency = cancelLatency;
        }

        if (parse.GetValue(_streamInterval) is { } streamInterval)
        {
            options.StreamInterval = streamInterval;
        }

        if (options.BrokenJsonRate + options.SchemaBreakRate > 1)
        {
            throw new UsageException($"{_brokenJson.Name} and {_schemaBreak.Name} add up to more than 1.");
        }

        if (options.FaultRate > 1)
        {
            throw new UsageException($"{_fail500.Name}, {_fail502.Name}, {_fail503.Name}, {_fail529.Name}, {_reset.Name} and {_hang.Name} add up to more than 1.");
        }

        return options;
    }
}
