using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// A batch against a provider that enforces request and token limits per second: Shepherd with
/// the limits configured, Shepherd learning them from the provider's headers, and the common
/// naive processor (fixed concurrency, a fixed sleep after every 429), all in one run.
/// </summary>
internal static class RateLimitScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 1000);
        var rpm = args.Int("rpm", 3000);
        var tpm = args.Int("tpm", 500_000);
        var naiveConcurrency = args.Int("naive-concurrency", 50);
        var naiveSleep = TimeSpan.FromSeconds(args.Int("naive-sleep", 5));
        var naiveCap = TimeSpan.FromSeconds(args.Int("naive-cap", 240));
        using var workload = Workload.CreateWords(count, 10, 400, 128);
        var providerTokens = workload.Bodies.Sum(body => SimulatedProvider.CostOf(body));
        var bound = Math.Max(providerTokens / (tpm / 60.0), count / (rpm / 60.0));
        var options = new SimulatorOptions
        {
            RequestsPerMinute = rpm,
            TokensPerMinute = tpm,
            Latency = TimeSpan.FromMilliseconds(200),
            Jitter = TimeSpan.FromMilliseconds(100),
        };

        var rules = new (string Name, Action<SimulatorOptions> Apply)[]
        {
            ("characters/4 + max_tokens", _ => { }),
            ("o200k", o => o.TokenCounting = TokenCounting.O200k),
            ("1.5 x o200k", o => (o.TokenCounting, o.TokenScale) = (TokenCounting.O200k, 1.5)),
            ("characters/4 + 10 per message", o => o.TokensPerMessage = 10),
            ("minute-long buckets", o => o.BucketSeconds = 60),
            ("headers when answered", o => o.HeadersWhenAnswered = true),
            ("limits halved at 40%", o => o.LimitChangeAfter = TimeSpan.FromSeconds(bound * 0.4)),
            ("no headers", o => o.RateLimitHeaders = false),
        };
        // --rules 1,3 measures only those rows (counted from 0); the first is the provider the naive approach meets too.
        var chosen = args.Text("rules", string.Join(',', Enumerable.Range(0, rules.Length))).Split(',').Select(int.Parse).ToHashSet();
        var rows = new List<object>();
        LimitFigures? configured = null, learned = null;
        foreach (var (name, apply) in rules.Where((_, i) => chosen.Contains(i)))
        {
            var rule = new SimulatorOptions { RequestsPerMinute = rpm, TokensPerMinute = tpm, Latency = options.Latency, Jitter = options.Jitter };
            apply(rule);
            // The bound by what this provider counts; halving the limits at 40% leaves the rest at half the rate.
            var counted = workload.Bodies.Sum(body => SimulatedProvider.CostOf(body, rule));
            var ruleBound = Math.Max(counted / (tpm / 60.0), count / (rpm / 60.0));
            ruleBound = rule.LimitChangeAfter is null ? ruleBound : (ruleBound * 0.4) + (ruleBound * 0.6 * 2);
            var configuredRule = await ShepherdAsync(workload, rule, ruleBound, "--rpm", ShepherdRun.Text(rpm), "--tpm", ShepherdRun.Text(tpm));
            var learnedRule = await ShepherdAsync(workload, rule, ruleBound);
            await Console.Error.WriteLineAsync($"{name}: configured {configuredRule.RatioToBound}x, {configuredRule.RateLimitedShare:P1} 429; learned {learnedRule.RatioToBound}x, {learnedRule.RateLimitedShare:P1} 429");
            rows.Add(new { Rule = name, BoundSeconds = Math.Round(ruleBound, 2), Configured = configuredRule, Learned = learnedRule });
            (configured, learned) = (configured ?? configuredRule, learned ?? learnedRule);
        }

        var naive = await NaiveAsync(workload, options, bound, naiveConcurrency, naiveSleep, naiveCap);
        await Console.Error.WriteLineAsync($"naive: {naive.WallSeconds} s, {naive.Completed} done, {naive.RateLimitedShare:P1} answered 429");
        return new
        {
            Scenario = "rate-limit",
            Machine = Machine.Describe(),
            Requests = count,
            ProviderRpm = rpm,
            ProviderTpm = tpm,
            ProviderCountedTokens = providerTokens,
            BoundSeconds = Math.Round(bound, 2),
            ShepherdConfigured = configured,
            ShepherdLearned = learned,
            Naive = naive,
            Rules = rows,
            NaiveSettings = new { Concurrency = naiveConcurrency, SleepAfter429Seconds = naiveSleep.TotalSeconds, GivenUpAfterSeconds = naiveCap.TotalSeconds },
        };
    }

    private static async Task<LimitFigures> ShepherdAsync(Workload workload, SimulatorOptions options, double bound, params string[] more)
    {
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
        var run = await ShepherdRun.StartAsync(workload.Path, server.BaseUrl, more);
        return LimitFigures.From(server.Provider.Stats(), run.DispatchSeconds, run.Number("succeeded"), workload.Bodies.Count, bound);
    }

    private static async Task<LimitFigures> NaiveAsync(Workload workload, SimulatorOptions options, double bound, int concurrency, TimeSpan sleep, TimeSpan cap)
    {
        await using var server = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = server.BaseUrl };
        using var giveUp = new CancellationTokenSource(cap);
        var next = -1;
        var completed = 0;
        var watch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while (!giveUp.IsCancellationRequested && (i = Interlocked.Increment(ref next)) < workload.Bodies.Count)
            {
                while (!giveUp.IsCancellationRequested)
                {
                    using var content = new ByteArrayContent(workload.Bodies[i]);
                    content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                    using var response = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), content);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref completed);
                        break;
                    }

                    try
                    {
                        await Task.Delay(sleep, TimeProvider.System, giveUp.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            }
        }));
        return LimitFigures.From(server.Provider.Stats(), watch.Elapsed.TotalSeconds, completed, workload.Bodies.Count, bound);
    }
}

/// <summary>The figures of one rate-limited run.</summary>
internal sealed record LimitFigures(double WallSeconds, double RatioToBound, long Completed, double CompletedShare, long UpstreamCalls, long RateLimited, double RateLimitedShare)
{
    public static LimitFigures From(SimulatorStats stats, double seconds, long completed, int total, double bound)
    {
        var limited = stats.ByStatus.GetValueOrDefault(429);
        return new LimitFigures(
            Math.Round(seconds, 2),
            Math.Round(seconds / bound, 3),
            completed,
            Math.Round((double)completed / total, 3),
            stats.Requests,
            limited,
            Math.Round(stats.Requests == 0 ? 0 : (double)limited / stats.Requests, 4));
    }
}
