using System.Globalization;
using System.Text;
using System.Text.Json;
using Npgsql;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// Several <c>shepherd serve</c> nodes on one PostgreSQL database, as real processes on
/// 127.0.0.1, in front of one simulated provider: they share the work without running anything
/// twice, answer for each other's batches, finish a killed node's work and keep to one limit together.
/// </summary>
public sealed class ClusterTests : IAsyncLifetime
{
    private const int Concurrency = 4;
    private readonly TempDirectory _folder = new();
    private readonly List<ShepherdProcess> _nodes = [];
    private string _database = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        _database = await PostgresCluster.CreateDatabaseAsync(Ct);
        // Nodes given up on after 3 s of silence, so a killed node's work moves on quickly.
        await File.WriteAllTextAsync(_folder.File("shepherd.json"), """{ "cluster": { "nodeTimeoutSeconds": 3 } }""", Ct);
    }

    public ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            node.Dispose();
        }

        _folder.Dispose();
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task ThreeNodes_RunOneBatchTogether_EachRequestOnce_AndAnyNodeAnswersForAny()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(10) });
        var nodes = await StartNodesAsync(simulator, 3);

        // Uploaded and created through the first node, watched through the second, read through the third.
        var lines = Enumerable.Range(0, 300).Select(i =>
            $$$"""{"custom_id":"q{{{i}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"question {{{i}}}"}]}}""");
        using var upload = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(string.Join('\n', lines))), "file", "questions.jsonl" },
        };
        var file = await ReadAsync(await nodes[0].PostAsync("/v1/files", upload, Ct));
        var created = await PostJsonAsync(nodes[0], "/v1/batches",
            $$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        var batchId = created.GetProperty("id").GetString()!;
        Assert.Equal(file.GetProperty("bytes").GetInt64(), (await GetJsonAsync(nodes[2], $"/v1/files/{file.GetProperty("id").GetString()}")).GetProperty("bytes").GetInt64());

        var ended = await PollAsync(nodes[1], batchId, b => b.GetProperty("status").GetString() == "completed");
        var output = await nodes[2].GetStringAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}/content", Ct);

        var answered = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("custom_id").GetString()).ToList();
        Assert.Equal(300, answered.Count);
        Assert.Equal(300, answered.Distinct().Count());
        var executed = simulator.Provider.ExecutedCounts();
        Assert.Equal(300, executed.Count);
        Assert.All(executed.Values, count => Assert.Equal(1, count));

        // A batch created through one node is cancelled through another, and every node sees it end.
        var slow = await PostJsonAsync(nodes[1], "/v1/batches", InlineBatch(2000));
        var cancelled = await PostJsonAsync(nodes[2], $"/v1/batches/{slow.GetProperty("id").GetString()}/cancel", "{}");
        Assert.True(cancelled.GetProperty("status").GetString() is "cancelling" or "cancelled", cancelled.ToString());
        var seen = await PollAsync(nodes[0], slow.GetProperty("id").GetString()!, b => b.GetProperty("status").GetString() == "cancelled");
        Assert.True(seen.GetProperty("request_counts").GetProperty("completed").GetInt64() < 2000);
    }

    [Fact]
    public async Task AKilledNode_ItsWorkIsFinishedByTheOthers_RepeatingAtMostWhatItHadInFlight()
    {
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(30), Jitter = TimeSpan.FromMilliseconds(10) });
        var nodes = await StartNodesAsync(simulator, 3);
        var batchId = (await PostJsonAsync(nodes[0], "/v1/batches", InlineBatch(300))).GetProperty("id").GetString()!;

        await PollAsync(nodes[0], batchId, b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 60);
        await _nodes[1].KillAsync();
        // What the killed node held when it died: sent and not yet recorded, or claimed and not yet sent.
        var held = await LeasesOfAsync("node-1");
        var ended = await PollAsync(nodes[2], batchId, b => b.GetProperty("status").GetString() == "completed");

        Assert.Equal(300, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
        var results = (await nodes[0].GetStringAsync($"/v1/batches/{batchId}/results?limit=1000", Ct));
        var ids = JsonDocument.Parse(results).RootElement.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("custom_id").GetString()).ToList();
        Assert.Equal(300, ids.Distinct().Count());
        // What the killed node had sent and not recorded is sent again; nothing else is.
        var executed = simulator.Provider.ExecutedCounts();
        Assert.Equal(300, executed.Count);
        Assert.InRange(executed.Values.Sum() - 300, 0, held);
    }

    [Fact]
    public async Task ThreeNodes_KeepToTheProvidersLimit_Together()
    {
        // 1,200 a minute is 20 a second, enforced per second: three nodes each at the full
        // limit would be refused two requests in three.
        await using var simulator = await Simulators.StartHttpAsync(new SimulatorOptions { RequestsPerMinute = 1200, Latency = TimeSpan.FromMilliseconds(5) });
        var nodes = await StartNodesAsync(simulator, 3, "--rpm", "1200");
        var batchId = (await PostJsonAsync(nodes[0], "/v1/batches", InlineBatch(240))).GetProperty("id").GetString()!;

        await PollAsync(nodes[1], batchId, b => b.GetProperty("status").GetString() == "completed");

        var stats = simulator.Provider.Stats();
        Assert.Equal(240, simulator.Provider.ExecutedCounts().Count);
        // A handful of 429s as the nodes start together on a loaded machine; nodes each at the full
        // limit would see about two in three refused.
        Assert.InRange(stats.ByStatus.GetValueOrDefault(429), 0, stats.Requests * 0.10);
    }

    private async Task<long> LeasesOfAsync(string node)
    {
        await using var connection = new NpgsqlConnection(_database);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand("SELECT COUNT(*) FROM items WHERE state = 1 AND leased_by = @node", connection);
        command.Parameters.AddWithValue("node", node);
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }

    private static string InlineBatch(int count) =>
        $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""))}}]}""";

    private async Task<List<HttpClient>> StartNodesAsync(SimulatorServer simulator, int count, params string[] extra)
    {
        var clients = new List<HttpClient>();
        for (var i = 0; i < count; i++)
        {
            var node = ShepherdProcess.Start(_folder.Path, [
                "serve", "--urls", "http://127.0.0.1:0", "--store", _database, "--node", $"node-{i}", "--config", _folder.File("shepherd.json"),
                "--provider", "openai", "--base-url", new Uri(simulator.BaseUrl, "v1").ToString(), "--api-key", "sk-upstream",
                "--concurrency", Concurrency.ToString(CultureInfo.InvariantCulture), .. extra]);
            _nodes.Add(node);
            var url = (await node.WaitForOutputAsync("Shepherd listening on")).Split(' ')[^1];
            clients.Add(new HttpClient { BaseAddress = new Uri(url) });
        }

        return clients;
    }

    private static async Task<JsonElement> ReadAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(Ct);
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.Clone();
        }
    }

    private static async Task<JsonElement> PostJsonAsync(HttpClient http, string path, string json) =>
        await ReadAsync(await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"), Ct));

    private static async Task<JsonElement> GetJsonAsync(HttpClient http, string path) => await ReadAsync(await http.GetAsync(path, Ct));

    private static Task<JsonElement> PollAsync(HttpClient http, string batchId, Func<JsonElement, bool> done) =>
        Poll.UntilAsync(() => GetJsonAsync(http, $"/v1/batches/{batchId}"), done, TimeSpan.FromMinutes(2), Ct);
}
