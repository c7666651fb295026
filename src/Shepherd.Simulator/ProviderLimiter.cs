using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.ML.Tokenizers;

namespace Shepherd.Simulator;

/// <summary>How a simulated provider's limiter counts the text of a request.</summary>
public enum TokenCounting
{
    /// <summary>About four characters a token, as OpenAI documents its limiter's estimate.</summary>
    Characters,

    /// <summary>Real o200k tokens.</summary>
    O200k,
}

/// <summary>
/// The limits of a simulated provider: a bucket per limit it has (requests; tokens as one;
/// Anthropic's input and output tokens apart), each counting a request the way the options say,
/// a change of every limit at a given time, and the rate-limit headers in either dialect.
/// Not thread-safe: the provider calls it under its lock.
/// </summary>
internal sealed class ProviderLimiter
{
    private static readonly Lazy<Tokenizer> O200k = new(() => TiktokenTokenizer.CreateForEncoding("o200k_base"));
    private readonly SimulatorOptions _options;
    private readonly LeakyBucket? _requests;
    private readonly LeakyBucket? _tokens;
    private readonly LeakyBucket? _inputTokens;
    private readonly LeakyBucket? _outputTokens;
    private readonly ConcurrentDictionary<string, bool> _cached = new(StringComparer.Ordinal);
    private DateTimeOffset? _firstRequest;
    private bool _changed;

    public ProviderLimiter(SimulatorOptions options)
    {
        _options = options;
        _requests = Bucket(options.RequestsPerMinute);
        _tokens = Bucket(options.TokensPerMinute);
        _inputTokens = Bucket(options.InputTokensPerMinute);
        _outputTokens = Bucket(options.OutputTokensPerMinute);
    }

    private IEnumerable<(string Name, LeakyBucket Bucket)> Buckets
    {
        get
        {
            foreach (var (name, bucket) in new[] { ("requests", _requests), ("tokens", _tokens), ("input-tokens", _inputTokens), ("output-tokens", _outputTokens) })
            {
                if (bucket is not null)
                {
                    yield return (name, bucket);
                }
            }
        }
    }

    /// <summary>Real tokens of a text, as the provider's usage reports them.</summary>
    public static int RealTokens(string text) => text.Length == 0 ? 0 : O200k.Value.CountTokens(text);

    /// <summary>
    /// What the limiter counts for the text of <paramref name="text"/>: characters/4 or o200k
    /// tokens, scaled by <see cref="SimulatorOptions.TokenScale"/>.
    /// </summary>
    public double TextCost(string text) =>
        _options.TokenScale * (_options.TokenCounting == TokenCounting.O200k ? RealTokens(text) : Math.Ceiling(text.Length / 4.0));

    /// <summary>The prompt as the limiter counts it: its text (less a cache read), plus the per-message overhead.</summary>
    public double PromptCost(RequestShape shape, bool cacheRead) =>
        TextCost(shape.Text) - (cacheRead ? TextCost(shape.CacheableText) : 0) + (_options.TokensPerMessage * shape.Messages);

    /// <summary>
    /// True when the cacheable prefix of <paramref name="shape"/> was seen before: its tokens are
    /// a cache read, which the input-token limit does not count. The first sight writes the cache.
    /// </summary>
    public bool ReadsCache(RequestShape shape) => shape.CacheableText.Length > 0 && !_cached.TryAdd(shape.CacheableText, true);

    /// <summary>How long until the request fits every limit; zero when it was admitted now (and counted).</summary>
    public TimeSpan Admit(double prompt, int maxTokens, DateTimeOffset now)
    {
        _firstRequest ??= now;
        if (!_changed && _options.LimitChangeAfter is { } after && now - _firstRequest >= after)
        {
            _changed = true;
            foreach (var (_, bucket) in Buckets)
            {
                bucket.SetLimit(Math.Max(1, bucket.PerMinute * _options.LimitChangeFactor), now);
            }
        }

        var wait = TimeSpan.Zero;
        foreach (var (bucket, cost) in Costs(prompt, maxTokens))
        {
            var fits = bucket.WaitFor(cost, now);
            wait = fits > wait ? fits : wait;
        }

        if (wait > TimeSpan.Zero)
        {
            return wait;
        }

        foreach (var (bucket, cost) in Costs(prompt, maxTokens))
        {
            bucket.Add(cost, now);
        }

        return TimeSpan.Zero;
    }

    /// <summary>Gives back the output charged at admission beyond what was written, as Anthropic's output-token limit does.</summary>
    public void Settle(int maxTokens, int outputTokens, DateTimeOffset now) => _outputTokens?.Add(outputTokens - maxTokens, now);

    /// <summary>The rate-limit headers in the dialect of the path, unless the provider sends none.</summary>
    public void AddHeaders(List<KeyValuePair<string, string>> headers, bool anthropic, DateTimeOffset now)
    {
        if (!_options.RateLimitHeaders)
        {
            return;
        }

        foreach (var (name, bucket) in Buckets)
        {
            if (anthropic)
            {
                Add(headers, part => $"anthropic-ratelimit-{name}-{part}", bucket, now, reset => RfcTime(now + reset));
            }
            else if (name is "requests" or "tokens")
            {
                Add(headers, part => $"x-ratelimit-{part}-{name}", bucket, now, GoDuration);
            }
        }

        if (anthropic && _tokens is null && MostRestrictive(now) is { } restrictive)
        {
            // Anthropic's tokens-* headers speak of the most restrictive token limit in effect.
            Add(headers, part => $"anthropic-ratelimit-tokens-{part}", restrictive, now, reset => RfcTime(now + reset));
        }
    }

    private LeakyBucket? MostRestrictive(DateTimeOffset now) =>
        new[] { _inputTokens, _outputTokens }.Where(b => b is not null).OrderByDescending(b => b!.ResetIn(now)).FirstOrDefault();

    private static void Add(List<KeyValuePair<string, string>> headers, Func<string, string> name, LeakyBucket bucket, DateTimeOffset now, Func<TimeSpan, string> reset)
    {
        headers.Add(new(name("limit"), ((long)Math.Round(bucket.PerMinute)).ToString(CultureInfo.InvariantCulture)));
        headers.Add(new(name("remaining"), bucket.Remaining(now).ToString(CultureInfo.InvariantCulture)));
        headers.Add(new(name("reset"), reset(bucket.ResetIn(now))));
    }

    private static string RfcTime(DateTimeOffset at) => at.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    /// <summary>A duration as OpenAI writes it: <c>20ms</c>, <c>0.5s</c>, <c>1s</c>, <c>6m0s</c>.</summary>
    internal static string GoDuration(TimeSpan duration)
    {
        if (duration < TimeSpan.FromSeconds(1))
        {
            return $"{Math.Ceiling(duration.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms";
        }

        if (duration < TimeSpan.FromMinutes(1))
        {
            return $"{Math.Round(duration.TotalSeconds, 3).ToString(CultureInfo.InvariantCulture)}s";
        }

        return $"{(int)duration.TotalMinutes}m{Math.Round(duration.TotalSeconds % 60, 3).ToString(CultureInfo.InvariantCulture)}s";
    }

    private IEnumerable<(LeakyBucket Bucket, double Cost)> Costs(double prompt, int maxTokens)
    {
        if (_requests is not null)
        {
            yield return (_requests, 1);
        }

        if (_tokens is not null)
        {
            yield return (_tokens, prompt + maxTokens);
        }

        if (_inputTokens is not null)
        {
            yield return (_inputTokens, prompt);
        }

        if (_outputTokens is not null)
        {
            yield return (_outputTokens, maxTokens);
        }
    }

    private LeakyBucket? Bucket(long? perMinute) => perMinute is { } limit ? new LeakyBucket(limit, _options.BucketSeconds) : null;
}
