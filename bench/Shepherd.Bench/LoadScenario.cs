using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Shepherd.Simulator;

namespace Shepherd.Bench;

/// <summary>
/// The API under load while a big batch runs: a Shepherd server on 127.0.0.1 sends a batch of
/// <c>--requests</c> (from an uploaded file) to the simulator over HTTP, and <c>--clients</c>
/// tasks call the server in a closed loop for <c>--seconds</c>, each call drawn from a fixed mix:
/// small inline batches, status reads, lists, result pages, the dashboard's JSON, and malformed
/// calls (broken JSON, unknown ids, a body over the create limit, a duplicate custom id) that
/// must be refused with a 4xx. Reports every kind's count and latency, any 5xx, any status other
/// than the expected one, and how the big batch moved meanwhile.
/// </summary>
internal static class LoadScenario
{
    // The create limit is lowered so an oversized body is cheap to send; the big batch comes from a file.
    private const long MaxCreateBodyBytes = 256 * 1024;

    // Weights of the mix, out of their sum: reads dominate, as a dashboard and pollers make them.
    private static readonly (string Kind, int Weight, HttpStatusCode Expected)[] Mix =
    [
        ("create", 5, HttpStatusCode.OK),
        ("status", 30, HttpStatusCode.OK),
        ("list", 15, HttpStatusCode.OK),
        ("results", 15, HttpStatusCode.OK),
        ("dashboard", 15, HttpStatusCode.OK),
        ("bad_json", 5, HttpStatusCode.BadRequest),
        ("unknown_batch", 5, HttpStatusCode.NotFound),
        ("duplicate_custom_id", 5, HttpStatusCode.BadRequest),
        ("oversized_body", 5, HttpStatusCode.RequestEntityTooLarge),
    ];

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 20_000);
        var latencyMs = args.Int("latency-ms", 20);
        var concurrency = args.Int("concurrency", 16);
        var clients = args.Int("clients", 16);
        var seconds = args.Int("seconds", 30);
        await using var host = await InProcessServer.StartAsync(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(latencyMs) }, concurrency, options => options.MaxCreateBodyBytes = MaxCreateBodyBytes);
        var http = host.Http;

        var bigId = await CreateBigBatchAsync(http, count);
        await WaitForAsync(http, bigId, p => p.Status == "in_progress" && p.Finished > 0, TimeSpan.FromMinutes(2));
        await Console.Error.WriteLineAsync($"big batch {bigId} of {count} requests in progress; load for {seconds} s with {clients} clients");

        var created = new SharedIds(bigId);
        var oversized = OversizedBody();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var rssPeak = new RssPeak();
        var monitor = MonitorAsync(http, bigId, rssPeak, stop.Token);
        var watch = Stopwatch.StartNew();
        var runs = await Task.WhenAll(Enumerable.Range(0, clients).Select(i => ClientAsync(http, i, created, oversized, stop.Token)));
        var elapsed = watch.Elapsed.TotalSeconds;
        var samples = await monitor;
        var after = await ReadProgressAsync(http, bigId);

        var kinds = Mix.Select(m => m.Kind).ToDictionary(kind => kind, kind =>
        {
            var calls = runs.SelectMany(r => r.Where(c => c.Kind == kind)).ToList();
            return new KindFigures(
                calls.Count,
                Math.Round(calls.Count / elapsed, 1),
                Percentiles.Of([.. calls.Select(c => c.Ms)]),
                calls.Where(c => c.Status is not null).GroupBy(c => (int)c.Status!.Value).OrderBy(g => g.Key).ToDictionary(g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Count()),
                calls.Count(c => c.Status is >= HttpStatusCode.InternalServerError),
                calls.Count(c => c.Status != Mix.First(m => m.Kind == kind).Expected),
                calls.Count(c => c.Status is null),
                calls.Where(c => c.Status != Mix.First(m => m.Kind == kind).Expected).Select(c => c.Note).Distinct().Take(3).ToList());
        });
        var all = runs.SelectMany(r => r).ToList();
        var finishedDuring = samples.Count > 1 ? samples[^1].Finished - samples[0].Finished : 0;
        var stalls = samples.Zip(samples.Skip(1)).Count(pair => pair.Second.Finished == pair.First.Finished && pair.First.Finished < count);
        var result = new
        {
            Scenario = "load",
            Machine = Machine.Describe(),
            Seconds = Math.Round(elapsed, 2),
            Clients = clients,
            BigBatchRequests = count,
            SimulatorLatencyMs = latencyMs,
            DispatchConcurrency = concurrency,
            MaxCreateBodyBytes,
            Calls = all.Count,
            CallsPerSecond = Math.Round(all.Count / elapsed, 1),
            ServerErrors5xx = all.Count(c => c.Status is >= HttpStatusCode.InternalServerError),
            UnexpectedStatuses = all.Count(c => c.Status is not null && c.Status != Mix.First(m => m.Kind == c.Kind).Expected),
            TransportErrors = all.Count(c => c.Status is null),
            SmallBatchesCreated = created.CreatedCount,
            Kinds = kinds,
            BigBatch = new
            {
                FinishedAtStart = samples.Count > 0 ? samples[0].Finished : 0,
                FinishedAtEnd = samples.Count > 0 ? samples[^1].Finished : 0,
                FinishedDuringLoad = finishedDuring,
                FinishedPerSecond = Math.Round(finishedDuring / elapsed, 1),
                SecondsWithoutProgress = stalls,
                KeptFinishing = finishedDuring > 0 && stalls <= 1,
                StatusAfter = after.Status,
                PerSecond = samples.Select(s => s.Finished).ToList(),
            },
            PeakRssMb = rssPeak.Mb,
            PeakRssNote = "one process: server, simulator and load generator together (VmHWM and 1 s samples of VmRSS)",
        };
        await Console.Error.WriteLineAsync(
            $"{all.Count} calls in {elapsed:0.0} s, {result.ServerErrors5xx} 5xx, {result.UnexpectedStatuses} unexpected, {result.TransportErrors} transport errors; "
            + $"big batch {result.BigBatch.FinishedAtStart} -> {result.BigBatch.FinishedAtEnd} of {count}");
        return result;
    }

    private static async Task<string> CreateBigBatchAsync(HttpClient http, int count)
    {
        var lines = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            lines.Append(CultureInfo.InvariantCulture,
                $$$"""{"custom_id":"big-{{{i}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Label the sentiment of review {{{i}}}: arrived late, works well."}]}}""").Append('\n');
        }

        using var upload = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(lines.ToString())), "file", "big.jsonl" },
        };
        var file = await ExpectAsync(await http.PostAsync(new Uri("v1/files", UriKind.Relative), upload));
        using var create = Json($$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        var batch = await ExpectAsync(await http.PostAsync(new Uri("v1/batches", UriKind.Relative), create));
        return batch.GetProperty("id").GetString()!;
    }

    /// <summary>One client: draws a kind from the mix, calls, times it, and goes again until stopped.</summary>
    private static async Task<List<Call>> ClientAsync(HttpClient http, int index, SharedIds ids, byte[] oversized, CancellationToken stop)
    {
        var random = new Random(1000 + index);
        var total = Mix.Sum(m => m.Weight);
        var calls = new List<Call>(50_000);
        var serial = 0;
        while (!stop.IsCancellationRequested)
        {
            var draw = random.Next(total);
            var kind = Mix.First(m => (draw -= m.Weight) < 0).Kind;
            var target = ids.Pick(random);
            using var request = kind switch
            {
                "create" => Post("v1/batches", Json(SmallBatch($"c{index}-{serial++}"))),
                "status" => new HttpRequestMessage(HttpMethod.Get, $"v1/batches/{target}"),
                "list" => new HttpRequestMessage(HttpMethod.Get, "v1/batches?limit=20"),
                "results" => new HttpRequestMessage(HttpMethod.Get, $"v1/batches/{target}/results?offset={random.Next(0, 4)}&limit=100"),
                "dashboard" => new HttpRequestMessage(HttpMethod.Get, $"v1/dashboard/batches/{target}"),
                "bad_json" => Post("v1/batches", Json("""{"model":"gpt-4o-mini","requests":[{"custom_id":"x","prompt":"unterminated}""")),
                "unknown_batch" => new HttpRequestMessage(HttpMethod.Get, $"v1/batches/batch_{random.NextInt64():x16}"),
                "duplicate_custom_id" => Post("v1/batches", Json("""{"model":"gpt-4o-mini","requests":[{"custom_id":"same","prompt":"a"},{"custom_id":"same","prompt":"b"}]}""")),
                _ => Post("v1/batches", Bytes(oversized)),
            };
            var start = Stopwatch.GetTimestamp();
            HttpStatusCode? status = null;
            string note;
            try
            {
                // Not cancelled by stop: a call under way is finished and counted, so the tail is not cut off.
                using var response = await http.SendAsync(request, CancellationToken.None);
                var body = await response.Content.ReadAsByteArrayAsync(CancellationToken.None);
                status = response.StatusCode;
                note = $"{(int)response.StatusCode}: {Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 300)))}";
                if (kind == "create" && response.StatusCode == HttpStatusCode.OK)
                {
                    ids.Add(JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!);
                }
            }
            catch (HttpRequestException exception)
            {
                note = $"transport: {exception.Message}";
            }

            calls.Add(new Call(kind, Stopwatch.GetElapsedTime(start).TotalMilliseconds, status, note));
        }

        return calls;
    }

    /// <summary>The big batch's progress once a second, and the process's resident memory, until stopped.</summary>
    private static async Task<List<Progress>> MonitorAsync(HttpClient http, string bigId, RssPeak rss, CancellationToken stop)
    {
        var samples = new List<Progress>();
        while (true)
        {
            samples.Add(await ReadProgressAsync(http, bigId));
            rss.Sample();
            if (stop.IsCancellationRequested)
            {
                return samples;
            }

            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), TimeProvider.System, stop);
            }
            catch (OperationCanceledException)
            {
                // The run is over: one last sample, taken at its end.
            }
        }
    }

    private static async Task<Progress> ReadProgressAsync(HttpClient http, string id)
    {
        using var response = await http.GetAsync(new Uri($"v1/batches/{id}", UriKind.Relative));
        return Progress.Of(await response.Content.ReadAsByteArrayAsync());
    }

    private static async Task WaitForAsync(HttpClient http, string id, Func<Progress, bool> done, TimeSpan limit)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var progress = await ReadProgressAsync(http, id);
            if (done(progress))
            {
                return;
            }

            if (watch.Elapsed > limit)
            {
                throw new TimeoutException($"The big batch did not start within {limit}: {progress}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), TimeProvider.System);
        }
    }

    private static string SmallBatch(string prefix) =>
        $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, 5).Select(i => $$"""{"custom_id":"{{prefix}}-{{i}}","prompt":"small question {{i}}"}"""))}}]}""";

    /// <summary>A valid inline batch just over the create limit, so only its size is wrong.</summary>
    private static byte[] OversizedBody()
    {
        var text = new StringBuilder("""{"model":"gpt-4o-mini","requests":[""");
        for (var i = 0; text.Length <= MaxCreateBodyBytes + 1024; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $$"""{"custom_id":"o{{i}}","prompt":"padding padding padding padding padding {{i}}"},""");
        }

        text.Length--;
        text.Append("]}");
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    private static HttpRequestMessage Post(string path, HttpContent content) => new(HttpMethod.Post, path) { Content = content };

    private static StringContent Json(string text) => new(text, Encoding.UTF8, "application/json");

    private static ByteArrayContent Bytes(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static async Task<JsonElement> ExpectAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync();
            return response.IsSuccessStatusCode
                ? JsonDocument.Parse(text).RootElement.Clone()
                : throw new InvalidOperationException($"{response.RequestMessage?.RequestUri} answered {(int)response.StatusCode}: {text}");
        }
    }

    private sealed record Call(string Kind, double Ms, HttpStatusCode? Status, string Note);

    /// <summary>The figures of one kind of call.</summary>
    private sealed record KindFigures(
        int Calls,
        double PerSecond,
        Percentiles LatencyMs,
        Dictionary<string, int> Statuses,
        int ServerErrors5xx,
        int Unexpected,
        int TransportErrors,
        List<string> UnexpectedExamples);

    /// <summary>The big batch and the small ones created during the run, for reads to aim at.</summary>
    private sealed class SharedIds(string bigId)
    {
        private readonly List<string> _created = [];

        public int CreatedCount
        {
            get
            {
                lock (_created)
                {
                    return _created.Count;
                }
            }
        }

        public void Add(string id)
        {
            lock (_created)
            {
                _created.Add(id);
            }
        }

        /// <summary>The big batch half the time, otherwise one of the small ones.</summary>
        public string Pick(Random random)
        {
            lock (_created)
            {
                return _created.Count == 0 || random.Next(2) == 0 ? bigId : _created[random.Next(_created.Count)];
            }
        }
    }

    /// <summary>The process's peak resident memory, from <c>/proc/self/status</c> (Linux); null elsewhere.</summary>
    private sealed class RssPeak
    {
        private long _sampledKb;

        public double? Mb => Read("VmHWM:") is { } hwm ? Math.Round(Math.Max(hwm, _sampledKb) / 1024.0, 1) : null;

        public void Sample() => _sampledKb = Math.Max(_sampledKb, Read("VmRSS:") ?? 0);

        private static long? Read(string field) =>
            File.Exists("/proc/self/status")
                ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(field, StringComparison.Ordinal)) is { } line
                    ? long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture)
                    : null
                : null;
    }
}
