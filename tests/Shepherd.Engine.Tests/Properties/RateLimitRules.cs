using System.Globalization;
using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Upstreams;
using Shepherd.Engine.Tests.Dispatch;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// One provider's rule for its limits, drawn from the family real providers fall in: how it
/// counts tokens, how much its buckets hold, split input and output limits, headers or none, a
/// limit that changes halfway.
/// </summary>
public sealed record RateLimitRule(
    TokenCounting Counting,
    double Scale,
    int PerMessage,
    double BucketSeconds,
    bool Anthropic,
    bool Headers,
    bool HeadersWhenAnswered,
    double? ChangeAtShare,
    int LatencyMs,
    bool TokensBind)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Counting}×{Scale:0.##}+{PerMessage}/message, {BucketSeconds:0.#} s buckets, {(Anthropic ? "anthropic split" : "openai")}, headers {(Headers ? HeadersWhenAnswered ? "when answered" : "at admission" : "none")}, change {(ChangeAtShare is { } c ? $"at {c:P0}" : "none")}, latency {LatencyMs} ms, {(TokensBind ? "tokens" : "requests")} bind");
}

/// <summary>The figures of one run against a rule: its time against the bound, and the share of requests answered 429.</summary>
public sealed record RateLimitFigures(double Ratio, double RateLimitedShare, long Sent, long RateLimited, double BoundSeconds, double Seconds)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Seconds:0.0} s for a bound of {BoundSeconds:0.0} s ({Ratio:0.000}×), {RateLimited} of {Sent} answered 429 ({RateLimitedShare:P1})");
}

/// <summary>Runs one lane over a batch against a simulated provider with a <see cref="RateLimitRule"/>, on the fake clock.</summary>
public abstract class RateLimitRuleRunner : DispatchTestBase
{
    private int _batches;

    protected async Task<RateLimitFigures> RunAsync(RateLimitRule rule, bool configured, int count, int seed)
    {
        var random = new Random(seed);
        var maxTokens = random.Next(32, 257);
        var requests = rule.Anthropic
            ? AnthropicOfWords(count, 10, 300, maxTokens, seed)
            : BatchFiles.OpenAIChatOfWords(count, 10, 300, maxTokens, seed);
        var (batchId, _) = await ImportAsync(count, prefix: $"r{Interlocked.Increment(ref _batches)}-", requests: requests);

        var simulatorOptions = new SimulatorOptions
        {
            TokenCounting = rule.Counting,
            TokenScale = rule.Scale,
            TokensPerMessage = rule.PerMessage,
            BucketSeconds = rule.BucketSeconds,
            RateLimitHeaders = rule.Headers,
            HeadersWhenAnswered = rule.HeadersWhenAnswered,
            Latency = TimeSpan.FromMilliseconds(rule.LatencyMs),
            Jitter = TimeSpan.FromMilliseconds(rule.LatencyMs / 2),
        };
        var bodies = requests.Select(r => Encoding.UTF8.GetBytes(r.Body)).ToList();
        var prompts = bodies.Sum(b => SimulatedProvider.CostOf(b, simulatorOptions) - maxTokens);
        // Limits: a request limit of 600 to 3000 a minute, and a token limit that binds, or leaves the requests to.
        var rpm = random.Next(600, 3001);
        var tokensPerRequest = (prompts / count) + maxTokens;
        var tpm = (long)(rpm * tokensPerRequest * (rule.TokensBind ? 0.5 + (random.NextDouble() * 0.4) : 1.3));
        double bound;
        LaneLimits? limits = null;
        if (rule.Anthropic)
        {
            simulatorOptions.RequestsPerMinute = rpm;
            simulatorOptions.InputTokensPerMinute = (long)(rpm * (prompts / count) * (rule.TokensBind ? 0.5 + (random.NextDouble() * 0.4) : 1.3));
            simulatorOptions.OutputTokensPerMinute = rpm * maxTokens * 2;
            bound = Math.Max(count / (rpm / 60.0), prompts / (simulatorOptions.InputTokensPerMinute.Value / 60.0));
            if (configured)
            {
                limits = new LaneLimits { RequestsPerMinute = rpm, InputTokensPerMinute = simulatorOptions.InputTokensPerMinute, OutputTokensPerMinute = simulatorOptions.OutputTokensPerMinute };
            }
        }
        else
        {
            simulatorOptions.RequestsPerMinute = rpm;
            simulatorOptions.TokensPerMinute = tpm;
            bound = Math.Max(count / (rpm / 60.0), (prompts + (count * maxTokens)) / (tpm / 60.0));
            if (configured)
            {
                limits = new LaneLimits { RequestsPerMinute = rpm, TokensPerMinute = tpm };
            }
        }

        if (rule.ChangeAtShare is { } share)
        {
            // Every limit halves once this share of the bound has passed: the rest goes at half the rate.
            simulatorOptions.LimitChangeAfter = TimeSpan.FromSeconds(bound * share);
            bound = (bound * share) + (bound * (1 - share) * 2);
        }

        // The last request goes at the bound at the earliest, and its answer comes a latency later.
        bound += rule.LatencyMs / 1000.0;
        var simulator = Simulators.Create(simulatorOptions, Time, seed);
        var upstream = new UpstreamOptions
        {
            Name = "provider",
            BaseUrl = new Uri(rule.Anthropic ? "http://provider.test" : "http://provider.test/v1"),
            Kind = rule.Anthropic ? UpstreamKind.Anthropic : UpstreamKind.OpenAI,
            Limits = limits ?? new LaneLimits(),
        };
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 64 }, upstream);
        var started = Time.GetUtcNow();

        await RunToCompletionAsync(dispatcher, batchId, () => simulator.WaitingOnTheClock);

        Assert.Equal(count, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        var executed = simulator.ExecutedCounts();
        Assert.All(bodies, b => Assert.Equal(1, executed[SimulatedProvider.KeyOf(b)]));
        var seconds = (await TookAsync(batchId, started)).TotalSeconds;
        var stats = simulator.Stats();
        var limited = stats.ByStatus.GetValueOrDefault(429);
        return new RateLimitFigures(seconds / bound, (double)limited / stats.Requests, stats.Requests, limited, bound, seconds);
    }

    /// <summary>Anthropic messages with prompts of <paramref name="minWords"/> to <paramref name="maxWords"/> words.</summary>
    private static IReadOnlyList<TestRequest> AnthropicOfWords(int count, int minWords, int maxWords, int maxTokens, int seed) =>
        [.. BatchFiles.OpenAIChatOfWords(count, minWords, maxWords, maxTokens, seed).Select(r =>
        {
            using var chat = JsonDocument.Parse(r.Body);
            var body = JsonSerializer.Serialize(new
            {
                model = "claude-haiku-4.5",
                max_tokens = maxTokens,
                messages = new[] { new { role = "user", content = chat.RootElement.GetProperty("messages")[0].GetProperty("content").GetString() } },
            });
            return new TestRequest(r.CustomId, body, $"{{\"custom_id\":\"{r.CustomId}\",\"params\":{body}}}");
        })];
}
