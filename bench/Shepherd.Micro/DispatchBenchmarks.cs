using BenchmarkDotNet.Attributes;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Micro;

/// <summary>
/// What the dispatcher's loop does for every request it sends: ask a rate bucket whether the
/// request fits and count it in, and a lane's whole round (wait check, admit, and learning from
/// the answer). Time is passed in directly and moves on by a fixed step per request, slowly
/// enough that the limits always let the request go, as on a lane running below its limits.
/// </summary>
[MemoryDiagnoser]
public class DispatchBenchmarks : IDisposable
{
    private const int PromptTokens = 20;
    private const int MaxOutputTokens = 50;
    private static readonly DateTimeOffset Start = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A tenth of a second per request: a bucket of 1,000 tokens a second drains the 100 each adds.</summary>
    private static readonly TimeSpan BucketStep = TimeSpan.FromMilliseconds(100);

    /// <summary>A hundred requests a second, well within the lane's limits.</summary>
    private static readonly TimeSpan LaneStep = TimeSpan.FromMilliseconds(10);

    private readonly UpstreamResponse _answer = new() { StatusCode = 200 };
    private readonly UpstreamResponse _answerWithLimits = new()
    {
        StatusCode = 200,
        RateLimits = new RateLimitSnapshot
        {
            RequestLimit = 60_000,
            RequestsReset = TimeSpan.FromMilliseconds(10),
            TokenLimit = 6_000_000,
            TokensReset = TimeSpan.FromMilliseconds(10),
        },
    };

    private HttpClient? _http;
    private RateBucket? _bucket;
    private Lane? _lane;
    private DateTimeOffset _now;

    /// <summary>A bucket of 60,000 tokens a minute, and a lane of one upstream with configured request and token limits.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _now = Start;
        _bucket = new RateBucket(60_000, Start);
        _http = new HttpClient();
        var options = new DispatchOptions();
        var upstream = new UpstreamOptions
        {
            BaseUrl = new Uri("http://upstream.test/v1"),
            Limits = new LaneLimits { RequestsPerMinute = 60_000, TokensPerMinute = 6_000_000 },
        };
        _lane = new Lane(new UpstreamEndpoint(new UpstreamClient(_http, upstream, TimeProvider.System), options), Samples.OpenAIModel, options, Start);
    }

    /// <summary>Releases the upstream's HTTP client, which sends nothing here.</summary>
    [GlobalCleanup]
    public void Dispose()
    {
        _http?.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Asks whether a request of 100 tokens fits, then counts it in.</summary>
    [Benchmark]
    public TimeSpan BucketWaitForAndAdd()
    {
        _now += BucketStep;
        var wait = _bucket!.WaitFor(100, _now);
        _bucket.Add(100, _now);
        return wait;
    }

    /// <summary>One request through a lane: the wait check, admission, and an answer without rate-limit headers.</summary>
    [Benchmark]
    public long LaneRound() => Round(_answer);

    /// <summary>One request through a lane whose provider sends rate-limit headers with every answer, as OpenAI does.</summary>
    [Benchmark]
    public long LaneRoundWithHeaders() => Round(_answerWithLimits);

    /// <summary>What the dispatcher does for one request on a lane: <c>Pick</c>'s wait check, <c>Admit</c>, then <c>Answered</c>.</summary>
    private long Round(UpstreamResponse answer)
    {
        _now += LaneStep;
        var lane = _lane!;
        if (lane.WaitBeforeAdmitting(PromptTokens, MaxOutputTokens, _now) != TimeSpan.Zero)
        {
            throw new InvalidOperationException("The lane held the request back: the step or the limits are wrong for this benchmark.");
        }

        var reservation = lane.Admit(PromptTokens, MaxOutputTokens, _now);
        lane.Complete(reservation, answer, Verdict.Success, 12, _now);
        return reservation.Sequence;
    }
}
