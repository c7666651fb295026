using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary><c>shepherd serve</c> as a user runs it: a real process, killed and started again.</summary>
public sealed class ServeCommandTests : IDisposable
{
    private const int Concurrency = 8;
    private const string GatewayKey = "sk-gateway-test";
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Fact]
    public async Task KilledMidBatch_TheServerFinishesItAfterARestart_SendingOnlyInFlightRequestsTwice()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(15), Jitter = TimeSpan.FromMilliseconds(5) });
        string[] command =
        [
            "serve", "--urls", "http://127.0.0.1:0", "--state", _folder.File("server.db"), "--gateway-key", GatewayKey,
            "--provider", "openai", "--base-url", new Uri(simulator.BaseUrl, "v1").ToString(), "--api-key", "sk-upstream",
            "--concurrency", Concurrency.ToString(CultureInfo.InvariantCulture),
        ];
        var requests = string.Join(",", Enumerable.Range(0, 300).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
        string batchId;
        using (var first = ShepherdProcess.Start(_folder.Path, command))
        {
            using var http = await ServerCalls.ConnectAsync(first, GatewayKey);
            using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
            batchId = (await ServerCalls.ReadAsync(created)).GetProperty("id").GetString()!;
            await ServerCalls.PollAsync(http, batchId, b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 30);
            await first.KillAsync();
        }

        // What the killed server had recorded, and what the provider had done for it by then.
        await Poll.UntilAsync(() => Task.FromResult(simulator.Provider.Stats().InFlight == 0), cancellationToken: Ct);
        var committedAtKill = (await ResumeAfterKillTests.CommittedAsync(_folder.File("server.db"))).Count;
        var executedAtKill = simulator.Provider.ExecutedCounts().Values.Sum();

        using var second = ShepherdProcess.Start(_folder.Path, command);
        using var client = await ServerCalls.ConnectAsync(second, GatewayKey);
        var ended = await ServerCalls.PollAsync(client, batchId, b => b.GetProperty("status").GetString() == "completed");

        Assert.Equal(300, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        // Every answer priced once, across the kill: gpt-4o-mini at $0.15 and $0.60 per million tokens.
        var usage = ended.GetProperty("usage");
        var expected = ((usage.GetProperty("input_tokens").GetInt64() * 150) + (usage.GetProperty("output_tokens").GetInt64() * 600)) / 1_000_000_000m;
        Assert.Equal(expected, ended.GetProperty("cost_usd").GetDecimal());
        Assert.True(expected > 0);
        var output = await client.GetStringAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}/content", Ct);
        var answered = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("custom_id").GetString()).ToList();
        Assert.Equal(300, answered.Distinct().Count());
        Assert.Equal(300, answered.Count);
        // Nothing recorded is sent again: the second life sends exactly what the first had not recorded.
        Assert.Equal(300 - committedAtKill, simulator.Provider.ExecutedCounts().Values.Sum() - executedAtKill);
        Assert.InRange(committedAtKill, 30, 299);

        await second.SignalAsync("TERM");
        var stopped = await second.WaitAsync();
        Assert.True(stopped.ExitCode == 0, stopped.ToString());
    }

    [Fact]
    public async Task AWrongUpstreamKey_HoldsTheBatchInProgress_WithItsLaneKeyRefused_AndARestartWithTheRightKeyFinishesIt()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = "sk-upstream-right" });
        string[] Serve(string key) =>
        [
            "serve", "--urls", "http://127.0.0.1:0", "--state", _folder.File("server.db"), "--gateway-key", GatewayKey,
            "--provider", "openai", "--base-url", new Uri(simulator.BaseUrl, "v1").ToString(), "--api-key", key,
        ];
        var requests = string.Join(",", Enumerable.Range(0, 30).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));
        string batchId;
        using (var wrong = ShepherdProcess.Start(_folder.Path, Serve("sk-upstream-wrong")))
        {
            using var http = await ServerCalls.ConnectAsync(wrong, GatewayKey);
            using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
            batchId = (await ServerCalls.ReadAsync(created)).GetProperty("id").GetString()!;

            var held = await ServerCalls.PollAsync(http, batchId, b => b.GetProperty("lanes").EnumerateArray().Any(l => l.GetProperty("state").GetString() == "key_refused"));

            Assert.Equal("in_progress", held.GetProperty("status").GetString());
            var lane = Assert.Single(held.GetProperty("lanes").EnumerateArray());
            Assert.StartsWith("HTTP 401: Incorrect API key provided", lane.GetProperty("reason").GetString(), StringComparison.Ordinal);
            Assert.Equal(JsonValueKind.Number, lane.GetProperty("since").ValueKind);
            Assert.Equal(JsonValueKind.Number, lane.GetProperty("next_probe_at").ValueKind);
            using var page = await http.GetAsync($"/v1/dashboard/batches/{batchId}", Ct);
            var dashboard = await ServerCalls.ReadAsync(page);
            Assert.Equal("key_refused", Assert.Single(dashboard.GetProperty("lanes").EnumerateArray()).GetProperty("state").GetString());
            var gauge = (await http.GetStringAsync("/metrics", Ct)).Split('\n')
                .Single(l => l.StartsWith("shepherd_lane_state{", StringComparison.Ordinal) && l.Contains("model=\"gpt-4o-mini\"", StringComparison.Ordinal));
            Assert.EndsWith(" 3", gauge, StringComparison.Ordinal);
            Assert.InRange(simulator.Provider.Stats().ByStatus[401], 1, Concurrency);
            Assert.Empty(simulator.Provider.ExecutedCounts());

            await wrong.SignalAsync("TERM");
            var stopped = await wrong.WaitAsync();
            Assert.True(stopped.ExitCode == 0, stopped.ToString());
            Assert.DoesNotContain("sk-upstream-wrong", stopped.Stdout + stopped.Stderr, StringComparison.Ordinal);
        }

        using var right = ShepherdProcess.Start(_folder.Path, Serve("sk-upstream-right"));
        using var client = await ServerCalls.ConnectAsync(right, GatewayKey);
        var ended = await ServerCalls.PollAsync(client, batchId, b => b.GetProperty("status").GetString() == "completed");

        Assert.Equal(30, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        Assert.Equal(30, simulator.Provider.ExecutedCounts().Values.Sum());
    }

    [Fact]
    public async Task GatewayKeysFromTheConfigFile_LetTheirTenantsIn()
    {
        var config = _folder.File("shepherd.json");
        await File.WriteAllTextAsync(config, """
            {
              "server": { "urls": ["http://127.0.0.1:0"], "gatewayKeys": [ { "name": "team-a", "apiKeyEnv": "TEAM_A_KEY" } ] }
            }
            """, Ct);
        using var server = ShepherdProcess.Start(_folder.Path, ["serve", "--config", config, "--provider", "sim", "--sim-latency", "1"],
            new Dictionary<string, string?> { ["TEAM_A_KEY"] = "sk-team-a" });
        var url = (await server.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
        using var http = new HttpClient { BaseAddress = new Uri(url) };

        using var without = await http.GetAsync("/v1/batches", Ct);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sk-team-a");
        using var with = await http.GetAsync("/v1/batches", Ct);

        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, without.StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, with.StatusCode);
    }

    [Fact]
    public async Task TheAnswerCacheOfTheConfigFile_AnswersATenantsRepeatedBatch_AndTheCacheCommandReadsIt()
    {
        var config = _folder.File("shepherd.json");
        await File.WriteAllTextAsync(config, """
            {
              "server": { "urls": ["http://127.0.0.1:0"], "state": "served.db", "gatewayKeys": [ { "name": "team-a", "apiKey": "sk-team-a" } ],
                          "cache": { "maxMegabytes": 8, "maxAgeDays": 2 } }
            }
            """, Ct);
        const string Batch = """{"model":"gpt-4o-mini","requests":[{"custom_id":"a","prompt":"one"},{"custom_id":"b","prompt":"two"}]}""";
        using (var server = ShepherdProcess.Start(_folder.Path, ["serve", "--config", config, "--provider", "sim", "--sim-latency", "1"]))
        {
            using var http = await ServerCalls.ConnectAsync(server, "sk-team-a");
            foreach (var round in new[] { 0L, 2L })
            {
                using var created = await http.PostAsync("/v1/batches", new StringContent(Batch, System.Text.Encoding.UTF8, "application/json"), Ct);
                var id = (await ServerCalls.ReadAsync(created)).GetProperty("id").GetString()!;
                var ended = await ServerCalls.PollAsync(http, id, b => b.GetProperty("status").GetString() == "completed");
                Assert.Equal(round, ended.GetProperty("cached").GetInt64());
                // The answers are written behind: the second batch is made once they are in.
                await Poll.UntilAsync(async () => (await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats", "--config", config)).Stdout.Contains(": 2 answers", StringComparison.Ordinal), TimeSpan.FromSeconds(20), Ct);
            }
        }

        var stats = await ShepherdProcess.RunAsync(_folder.Path, "cache", "stats", "--config", config);
        Assert.Contains("served.answers.db: 2 answers", stats.Stdout, StringComparison.Ordinal);
        Assert.Contains("of at most 8 MB, kept up to 2 days", stats.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--urls", "ftp://127.0.0.1:1", "is not an http or https url")]
    [InlineData("--gateway-key", " ", "cannot be empty")]
    [InlineData("--store", "postgres://db.internal:port/shepherd", "--store: The store 'postgres://db.internal:port/shepherd' is not a valid postgres://")]
    [InlineData("--store", "Host=db.internal;Colour=blue", "--store:")]
    public async Task BadFlags_AreRefusedWithWhatIsWrong(string flag, string value, string message)
    {
        string[] args = flag == "--store"
            ? ["serve", "--provider", "sim", "--store", value]
            : ["serve", "--provider", "sim", "--store", _folder.File("s.db"), flag, value];
        var result = await ShepherdProcess.RunAsync(_folder.Path, args);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task APortInUse_IsSaidInOneLine_WithoutTheHostsStackTrace()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var url = $"http://127.0.0.1:{((System.Net.IPEndPoint)taken.LocalEndpoint).Port}";

        var result = await ShepherdProcess.RunAsync(_folder.Path, "serve", "--provider", "sim", "--urls", url, "--store", _folder.File("s.db"));

        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"shepherd: cannot listen on {url}: the address is in use (is another server running there?). Give another with --urls; port 0 picks a free one.", result.Stderr.Trim());
        // Nothing is left behind where nothing was: neither the state file nor its spool folder.
        Assert.Empty(Directory.GetFileSystemEntries(_folder.Path));
    }

    [Fact]
    public async Task ADatabaseThatCannotBeReached_StopsTheStart_SayingWhere()
    {
        var result = await ShepherdProcess.RunAsync(_folder.Path, "serve", "--provider", "sim", "--urls", "http://127.0.0.1:0",
            "--store", "Host=127.0.0.1;Port=1;Username=shepherd;Password=secret-password;Database=shepherd;Timeout=3");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("The database PostgreSQL at 127.0.0.1:1/shepherd could not be used", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("secret-password", result.Stderr + result.Stdout, StringComparison.Ordinal);
    }
}
