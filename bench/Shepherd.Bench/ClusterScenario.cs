using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Npgsql;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Bench;

/// <summary>
/// Several <c>shepherd serve</c> nodes (child processes) on one PostgreSQL database (a throwaway
/// cluster started for the run, or <c>SHEPHERD_TEST_POSTGRES</c>), in front of one simulated
/// provider in this process. Three measurements: the total rate the provider sees from three
/// nodes against its per-minute limit; a node killed with SIGKILL halfway (results exactly once,
/// repeats bounded by what it held); and throughput with 1, 2 and 3 nodes against an unlimited
/// provider, beside a bare HttpClient loop at the same concurrency in the same run.
/// </summary>
internal static class ClusterScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var part = args.Text("part", "all");
        var nodes = args.Int("nodes", 3);
        object? limit = null, kill = null, scaling = null;
        if (part is "all" or "limit")
        {
            limit = await LimitAsync(nodes, args.Int("requests", 20_000), args.Int("rpm", 6_000));
        }

        if (part is "all" or "kill")
        {
            kill = await KillAsync(nodes, args.Int("kill-requests", 6_000));
        }

        if (part is "all" or "scaling")
        {
            scaling = await ScalingAsync(nodes, args.Int("scaling-requests", 6_000), args.Int("concurrency", 32));
        }

        return new { Scenario = "cluster", Machine = Machine.Describe(), Limit = limit, Kill = kill, Scaling = scaling };
    }

    /// <summary>
    /// Nodes against a provider that enforces its per-minute limit per second: the rate it admits,
    /// read every second. Once as one cluster with the batch created through one node, and, as
    /// the baseline, as separate Shepherds (each its own SQLite store and a part of the requests),
    /// each keeping to the whole limit as it must when it knows of no other.
    /// </summary>
    private static async Task<object> LimitAsync(int count, int requests, int rpm) => new
    {
        Shared = await LimitRunAsync(count, requests, rpm, shared: true),
        Separate = await LimitRunAsync(count, requests, rpm, shared: false),
    };

    private static async Task<object> LimitRunAsync(int count, int requests, int rpm, bool shared)
    {
        var options = new SimulatorOptions { RequestsPerMinute = rpm, Latency = TimeSpan.FromMilliseconds(200), Jitter = TimeSpan.FromMilliseconds(100) };
        await using var simulator = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
        await using var cluster = await Cluster.StartAsync(count, simulator.BaseUrl, 64, shared);
        var samples = new List<(double Seconds, long Admitted)>();
        var watch = Stopwatch.StartNew();
        var batches = shared
            ? [(Node: 0, Id: await cluster.CreateAsync(0, requests))]
            : await Task.WhenAll(Enumerable.Range(0, count).Select(async node => (Node: node, Id: await cluster.CreateAsync(node, requests / count, node * (requests / count)))));
        using (var sampling = new PeriodicTimer(TimeSpan.FromSeconds(1), TimeProvider.System))
        {
            while (await sampling.WaitForNextTickAsync())
            {
                samples.Add((watch.Elapsed.TotalSeconds, simulator.Provider.Stats().ByStatus.GetValueOrDefault(200)));
                var statuses = await Task.WhenAll(batches.Select(b => cluster.StatusAsync(b.Node, b.Id)));
                if (statuses.All(status => status is "completed" or "failed"))
                {
                    break;
                }
            }
        }

        // From the first second anything was admitted to the last one: the run's average, and its busiest minute.
        var busy = samples.SkipWhile(s => s.Admitted == 0).ToList();
        var average = (busy[^1].Admitted - busy[0].Admitted) / (busy[^1].Seconds - busy[0].Seconds) * 60;
        var busiest = busy.SelectMany((start, i) => busy.Skip(i).Where(end => end.Seconds - start.Seconds >= 59.5).Take(1)
            .Select(end => (end.Admitted - start.Admitted) / (end.Seconds - start.Seconds) * 60)).DefaultIfEmpty(average).Max();
        var stats = simulator.Provider.Stats();
        var limited = stats.ByStatus.GetValueOrDefault(429);
        var figures = new
        {
            Nodes = count,
            Store = shared ? "one PostgreSQL database" : "a SQLite file each",
            Requests = requests,
            ProviderRpm = rpm,
            WallSeconds = Math.Round(watch.Elapsed.TotalSeconds, 1),
            AdmittedRpm = Math.Round(average),
            AdmittedRpmToLimit = Math.Round(average / rpm, 4),
            BusiestMinuteRpm = Math.Round(busiest),
            BusiestMinuteToLimit = Math.Round(busiest / rpm, 4),
            UpstreamCalls = stats.Requests,
            RateLimited = limited,
            RateLimitedShare = Math.Round((double)limited / stats.Requests, 4),
            Executed = simulator.Provider.ExecutedCounts().Count,
        };
        await Console.Error.WriteLineAsync($"limit ({figures.Store}): {figures.AdmittedRpm} rpm admitted ({figures.AdmittedRpmToLimit:P1} of {rpm}), busiest minute {figures.BusiestMinuteRpm}, {figures.RateLimitedShare:P2} answered 429");
        return figures;
    }

    /// <summary>A node killed with SIGKILL when half the batch is done; the others finish it.</summary>
    private static async Task<object> KillAsync(int count, int requests)
    {
        var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(50), Jitter = TimeSpan.FromMilliseconds(20) };
        await using var simulator = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
        await using var cluster = await Cluster.StartAsync(count, simulator.BaseUrl, 16);
        var batchId = await cluster.CreateAsync(0, requests);
        while (await cluster.CompletedAsync(0, batchId) < requests / 2)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), TimeProvider.System);
        }

        var killedAt = await cluster.CompletedAsync(0, batchId);
        cluster.Kill(1);
        // What the killed node held: claimed and not yet sent, or sent and not yet recorded (the
        // provider has received those). Read before the others take it over.
        var received = simulator.Provider.ReceivedCounts();
        var held = await cluster.LeasesOfAsync(1);
        var inFlight = held.Count(body => received.ContainsKey(SimulatedProvider.KeyOf(body)));
        var watch = Stopwatch.StartNew();
        await cluster.WaitAsync(0, batchId);

        var results = await cluster.ResultsAsync(2, batchId);
        var executed = simulator.Provider.ExecutedCounts();
        var figures = new
        {
            Nodes = count,
            Requests = requests,
            CompletedAtKill = killedAt,
            HeldByKilledNode = held.Count,
            SentUnrecordedByKilledNode = inFlight,
            SecondsToFinishAfterKill = Math.Round(watch.Elapsed.TotalSeconds, 1),
            Results = results.Count,
            DistinctResults = results.Distinct(StringComparer.Ordinal).Count(),
            Succeeded = results.Count(r => r.EndsWith(":succeeded", StringComparison.Ordinal)),
            ExecutedRequests = executed.Count,
            RepeatedExecutions = executed.Values.Sum() - executed.Count,
        };
        await Console.Error.WriteLineAsync($"kill: {figures.Succeeded}/{requests} succeeded once, {figures.RepeatedExecutions} repeated executions; the killed node held {held.Count}, {inFlight} of them sent and not recorded");
        return figures;
    }

    /// <summary>Throughput with one node, then two, then three (each on a fresh database), one node on SQLite, and a bare HttpClient loop.</summary>
    private static async Task<object> ScalingAsync(int most, int requests, int concurrency)
    {
        var options = new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(20), Jitter = TimeSpan.FromMilliseconds(5) };
        var runs = new List<object>();
        foreach (var (count, shared) in Enumerable.Range(1, most).Select(n => (n, true)).Append((1, false)))
        {
            await using var simulator = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
            await using var cluster = await Cluster.StartAsync(count, simulator.BaseUrl, concurrency, shared);
            var watch = Stopwatch.StartNew();
            await cluster.WaitAsync(0, await cluster.CreateAsync(0, requests));
            var seconds = watch.Elapsed.TotalSeconds;
            var store = shared ? "PostgreSQL" : "SQLite";
            runs.Add(new { Nodes = count, Store = store, Seconds = Math.Round(seconds, 2), RequestsPerSecond = Math.Round(requests / seconds) });
            await Console.Error.WriteLineAsync($"scaling: {count} node(s) on {store}: {requests / seconds:F0} requests/s");
        }

        var baselines = new List<object>();
        foreach (var width in new[] { concurrency, concurrency * most })
        {
            await using var simulator = await SimulatorServer.StartAsync(new SimulatedProvider(options, TimeProvider.System, new Random(1)), 0, CancellationToken.None);
            var seconds = await BareLoopAsync(simulator.BaseUrl, requests, width);
            baselines.Add(new { Concurrency = width, Seconds = Math.Round(seconds, 2), RequestsPerSecond = Math.Round(requests / seconds) });
            await Console.Error.WriteLineAsync($"scaling: bare HttpClient loop at {width}: {requests / seconds:F0} requests/s");
        }

        return new { Requests = requests, ConcurrencyPerNode = concurrency, ProviderLatencyMs = 20, Nodes = runs, BareHttpClient = baselines };
    }

    private static async Task<double> BareLoopAsync(Uri baseUrl, int requests, int concurrency)
    {
        using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = baseUrl };
        var next = -1;
        var watch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < requests)
            {
                using var content = new StringContent(Cluster.Body(i), Encoding.UTF8, "application/json");
                using var response = await client.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), content);
                response.EnsureSuccessStatusCode();
            }
        }));
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>Nodes on a fresh database, each a <c>shepherd serve</c> process.</summary>
    private sealed class Cluster : IAsyncDisposable
    {
        private readonly List<ServeNode> _nodes = [];
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "shepherd-bench", Guid.NewGuid().ToString("N"));
        private string _database = "";

        public static string Body(int i) =>
            $$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Classify review {{i}}: the product arrived on time and works."}],"max_tokens":16}""";

        /// <summary>Starts the nodes: on one PostgreSQL database, or, when not <paramref name="shared"/>, each on a SQLite file of its own (separate Shepherds).</summary>
        public static async Task<Cluster> StartAsync(int count, Uri provider, int concurrency, bool shared = true)
        {
            var cluster = new Cluster();
            Directory.CreateDirectory(cluster._folder);
            try
            {
                cluster._database = shared ? await PostgresCluster.CreateDatabaseAsync(CancellationToken.None) : "";
                var config = Path.Combine(cluster._folder, "shepherd.json");
                await File.WriteAllTextAsync(config, """{ "cluster": { "nodeTimeoutSeconds": 5 } }""");
                for (var i = 0; i < count; i++)
                {
                    var store = shared ? cluster._database : Path.Combine(cluster._folder, $"node-{i}.db");
                    cluster._nodes.Add(await ServeNode.StartAsync(cluster._folder, [.. ServeNode.Arguments(provider, store, concurrency), "--node", $"node-{i}", "--config", config]));
                }
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }

            return cluster;
        }

        /// <summary>Creates an inline batch of requests <paramref name="first"/> to <paramref name="first"/> + <paramref name="requests"/> through a node.</summary>
        public async Task<string> CreateAsync(int node, int requests, int first = 0)
        {
            var body = new StringBuilder("""{"model":"gpt-4o-mini","requests":[""");
            for (var i = first; i < first + requests; i++)
            {
                body.Append(i == first ? "" : ",").Append(CultureInfo.InvariantCulture, $$"""{"custom_id":"r{{i}}","body":{{Body(i)}}}""");
            }

            using var content = new StringContent(body.Append("]}").ToString(), Encoding.UTF8, "application/json");
            using var response = await _nodes[node].Http.PostAsync("/v1/batches", content);
            var text = await response.Content.ReadAsStringAsync();
            return response.IsSuccessStatusCode
                ? JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!
                : throw new InvalidOperationException($"The batch was refused: {text}");
        }

        public async Task<string?> StatusAsync(int node, string batchId) => (await _nodes[node].BatchAsync(batchId)).GetProperty("status").GetString();

        /// <summary>Returns when the batch has ended, looking every 50 ms.</summary>
        public Task<JsonElement> WaitAsync(int node, string batchId) => _nodes[node].WaitAsync(batchId);

        public async Task<long> CompletedAsync(int node, string batchId) => (await _nodes[node].BatchAsync(batchId)).GetProperty("request_counts").GetProperty("completed").GetInt64();

        /// <summary>Every result line as <c>custom_id:status</c>.</summary>
        public async Task<List<string>> ResultsAsync(int node, string batchId)
        {
            var lines = new List<string>();
            for (var offset = 0; ; offset += 1000)
            {
                using var page = JsonDocument.Parse(await _nodes[node].Http.GetStringAsync($"/v1/batches/{batchId}/results?offset={offset}&limit=1000"));
                var data = page.RootElement.GetProperty("data");
                lines.AddRange(data.EnumerateArray().Select(r => $"{r.GetProperty("custom_id").GetString()}:{r.GetProperty("status").GetString()}"));
                if (data.GetArrayLength() < 1000)
                {
                    return lines;
                }
            }
        }

        public void Kill(int node) => _nodes[node].Kill();

        /// <summary>The bodies of the items a node holds leased.</summary>
        public async Task<List<byte[]>> LeasesOfAsync(int node)
        {
            await using var connection = new NpgsqlConnection(_database);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT b.body FROM items i JOIN item_bodies b ON b.item_id = i.id WHERE i.state = 1 AND i.leased_by = @node", connection);
            command.Parameters.AddWithValue("node", $"node-{node}");
            await using var reader = await command.ExecuteReaderAsync();
            var bodies = new List<byte[]>();
            while (await reader.ReadAsync())
            {
                bodies.Add((byte[])reader.GetValue(0));
            }

            return bodies;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var node in _nodes)
            {
                await node.DisposeAsync();
            }

            Directory.Delete(_folder, recursive: true);
        }
    }
}
