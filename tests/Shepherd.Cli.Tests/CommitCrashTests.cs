using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Npgsql;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// <c>shepherd serve</c> killed with SIGKILL again and again while group commits of many answers
/// flow (a fast provider, 64 requests in flight), on SQLite and on PostgreSQL: each restart on the
/// same store finishes the batch with every request answered once, counts and costs that add up,
/// and nothing recorded sent again.
/// </summary>
public sealed class CommitCrashTests : IDisposable
{
    private const int Concurrency = 64;
    private const int Requests = 3_000;
    private const string GatewayKey = "sk-gateway-test";

    // What one kill may cost twice: the requests in flight (at most Concurrency) and the answers
    // already received that wait for the next group commit, which the dispatcher keeps to two
    // rounds of its concurrency (it stops sending while more wait for the store).
    private const int RepeatsPerKill = 3 * Concurrency;

    // Each life is killed once this share of the batch is completed.
    private static readonly double[] KillPoints = [0.15, 0.40, 0.70];

    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task KilledThreeTimesDuringGroupCommits_FinishesEachRequestOnce_WithCountsAndCostsThatAddUp(string kind)
    {
        var store = await StoreAsync(kind);
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1) });
        string[] command =
        [
            "serve", "--urls", "http://127.0.0.1:0", "--store", store, "--gateway-key", GatewayKey,
            // The same node name in every life, so a PostgreSQL node takes its own earlier leases back at once.
            "--node", "crash-node",
            "--provider", "openai", "--base-url", new Uri(simulator.BaseUrl, "v1").ToString(), "--api-key", "sk-upstream",
            "--concurrency", Concurrency.ToString(CultureInfo.InvariantCulture),
        ];
        var requests = string.Join(",", Enumerable.Range(0, Requests).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""));

        string? batchId = null;
        long executedBefore = 0, committedBefore = 0;
        var unrecordedAtKills = new List<long>();
        foreach (var point in KillPoints)
        {
            long completedAtKill;
            using (var server = ShepherdProcess.Start(_folder.Path, command))
            {
                using var http = await ServerCalls.ConnectAsync(server, GatewayKey);
                if (batchId is null)
                {
                    using var created = await http.PostAsync("/v1/batches", new StringContent($$"""{"model":"gpt-4o-mini","requests":[{{requests}}]}""", Encoding.UTF8, "application/json"), Ct);
                    batchId = (await ServerCalls.ReadAsync(created)).GetProperty("id").GetString()!;
                }

                var seen = await ServerCalls.PollAsync(http, batchId, b => Completed(b) >= point * Requests);
                await server.KillAsync();
                completedAtKill = Completed(seen);
                Assert.True(completedAtKill < Requests && seen.GetProperty("status").GetString() == "in_progress", seen.ToString());
            }

            // What the killed server had recorded, and what the provider had done for it by then.
            await Poll.UntilAsync(() => Task.FromResult(simulator.Provider.Stats().InFlight == 0), cancellationToken: Ct);
            var committed = await CommittedAsync(kind, store);
            var executed = simulator.Provider.ExecutedCounts().Values.Sum();
            // Sent in this life and not recorded when it died: exactly what the next life sends again.
            var unrecorded = (executed - executedBefore) - (committed - committedBefore);
            unrecordedAtKills.Add(unrecorded);
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"{kind}: kill at {point:P0}: status said {completedAtKill} completed, store had {committed} recorded, provider had executed {executed}; {unrecorded} sent and not recorded");
            // The kill must land while answers are still being recorded, or it tests nothing.
            Assert.True(committed < Requests, $"the kill came after the last answer was recorded ({committed} of {Requests})");
            Assert.True(committed >= committedBefore, $"the store lost answers across a kill: {committedBefore} then {committed}");
            Assert.InRange(unrecorded, 0, RepeatsPerKill);
            if (kind == "sqlite")
            {
                Assert.Equal("ok", await IntegrityCheckAsync(store));
            }

            (executedBefore, committedBefore) = (executed, committed);
        }

        using var last = ShepherdProcess.Start(_folder.Path, command);
        using var client = await ServerCalls.ConnectAsync(last, GatewayKey);
        var ended = await ServerCalls.PollAsync(client, batchId!, b => b.GetProperty("status").GetString() == "completed");

        var counts = ended.GetProperty("request_counts");
        Assert.Equal(Requests, counts.GetProperty("total").GetInt64());
        Assert.Equal(Requests, counts.GetProperty("completed").GetInt64() + counts.GetProperty("failed").GetInt64());
        Assert.Equal(Requests, counts.GetProperty("completed").GetInt64());

        // Every custom id exactly once, in the paged results and in the output file.
        var results = await ResultsAsync(client, batchId!);
        Assert.Equal(Requests, results.Count);
        Assert.Equal(Requests, results.Select(r => r.GetProperty("custom_id").GetString()).Distinct().Count());
        Assert.All(results, r => Assert.Equal("succeeded", r.GetProperty("status").GetString()));
        var output = await client.GetStringAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}/content", Ct);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Equal(Requests, lines.Count);
        Assert.Equal(
            Enumerable.Range(0, Requests).Select(i => $"q{i}").Order(StringComparer.Ordinal),
            lines.Select(l => l.GetProperty("custom_id").GetString()!).Order(StringComparer.Ordinal));

        // The batch's totals are the sums of its answers: nothing counted twice across the kills.
        var usage = ended.GetProperty("usage");
        var inputTokens = usage.GetProperty("input_tokens").GetInt64();
        var outputTokens = usage.GetProperty("output_tokens").GetInt64();
        Assert.Equal(lines.Sum(l => Usage(l, "prompt_tokens")), inputTokens);
        Assert.Equal(lines.Sum(l => Usage(l, "completion_tokens")), outputTokens);
        Assert.Equal(results.Sum(r => Usage(r, "prompt_tokens")), inputTokens);
        Assert.Equal(results.Sum(r => Usage(r, "completion_tokens")), outputTokens);
        // gpt-4o-mini at $0.15 and $0.60 per million tokens.
        var expected = ((inputTokens * 150) + (outputTokens * 600)) / 1_000_000_000m;
        Assert.True(expected > 0);
        Assert.Equal(expected, ended.GetProperty("cost_usd").GetDecimal());
        Assert.Equal(expected, results.Sum(r => r.GetProperty("cost_usd").GetDecimal()));

        // The provider did every request, and repeated exactly what a killed life had sent and not recorded.
        var executedCounts = simulator.Provider.ExecutedCounts();
        Assert.Equal(Requests, executedCounts.Count);
        var repeats = executedCounts.Values.Sum() - Requests;
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{kind}: unrecorded at each kill {string.Join(", ", unrecordedAtKills)}; {repeats} requests sent twice over {KillPoints.Length} kills");
        Assert.Equal(unrecordedAtKills.Sum(), repeats);
        Assert.InRange(repeats, 0, KillPoints.Length * RepeatsPerKill);

        await last.SignalAsync("TERM");
        var stopped = await last.WaitAsync();
        Assert.True(stopped.ExitCode == 0, stopped.ToString());
        if (kind == "sqlite")
        {
            Assert.Equal("ok", await IntegrityCheckAsync(store));
        }
    }

    private static long Completed(JsonElement batch) => batch.GetProperty("request_counts").GetProperty("completed").GetInt64();

    private static long Usage(JsonElement line, string name) =>
        line.GetProperty("response").GetProperty("body").GetProperty("usage").GetProperty(name).GetInt64();

    private async Task<string> StoreAsync(string kind)
    {
        if (kind == "sqlite")
        {
            return _folder.File("server.db");
        }

        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        return await PostgresCluster.CreateDatabaseAsync(Ct);
    }

    /// <summary>Requests with an answer recorded (succeeded or failed), read straight from the store.</summary>
    private static async Task<long> CommittedAsync(string kind, string store)
    {
        const string Sql = "SELECT COUNT(*) FROM items WHERE state IN (2, 3)";
        if (kind == "sqlite")
        {
            await using var connection = new SqliteConnection($"Data Source={store};Mode=ReadOnly;Pooling=False");
            await connection.OpenAsync(Ct);
            await using var command = connection.CreateCommand();
            command.CommandText = Sql;
            return (long)(await command.ExecuteScalarAsync(Ct))!;
        }

        await using var postgres = new NpgsqlConnection(store);
        await postgres.OpenAsync(Ct);
        await using var query = new NpgsqlCommand(Sql, postgres);
        return (long)(await query.ExecuteScalarAsync(Ct))!;
    }

    private static async Task<string> IntegrityCheckAsync(string path)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA integrity_check";
        return (string)(await command.ExecuteScalarAsync(Ct))!;
    }

    private static async Task<List<JsonElement>> ResultsAsync(HttpClient http, string batchId)
    {
        var results = new List<JsonElement>();
        long offset = 0;
        while (true)
        {
            using var response = await http.GetAsync($"/v1/batches/{batchId}/results?offset={offset}&limit=1000", Ct);
            var page = await ServerCalls.ReadAsync(response);
            results.AddRange(page.GetProperty("data").EnumerateArray());
            if (!page.GetProperty("has_more").GetBoolean())
            {
                return results;
            }

            offset = page.GetProperty("next_offset").GetInt64();
        }
    }
}
