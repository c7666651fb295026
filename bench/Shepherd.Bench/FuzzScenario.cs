using System.Diagnostics;
using System.Net.Http.Headers;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Model;
using Shepherd.Server;
using Shepherd.Testing;

namespace Shepherd.Bench;

/// <summary>
/// A libFuzzer-style mutational loop over the parsers, with no external tool: inputs from the
/// seed corpus are mutated and fed to the JSONL importer, the configuration loader and the
/// server's create-body reader. Anything thrown other than a documented error is a crash; an
/// input that takes longer than the hang limit is a hang. Both are saved under the corpus'
/// <c>crashes/</c> folder with their stack.
/// </summary>
internal static partial class FuzzScenario
{
    private const int MaxInputBytes = 64 * 1024;
    private static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(2);

    // Abandon a stuck target after this, so one hang cannot stop the run.
    private static readonly TimeSpan AbandonAfter = TimeSpan.FromSeconds(20);

    private delegate Task<string?> Target(byte[] input);

    public static async Task<object> RunAsync(BenchArgs args)
    {
        var seconds = args.Int("seconds", 60);
        var seed = args.Int("seed", 1);
        var corpusFolder = args.Text("corpus", Path.Combine("bench", "corpus"));
        var crashFolder = Path.Combine(corpusFolder, "crashes");
        var random = new Random(seed);
        var corpus = Directory.GetFiles(corpusFolder).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();
        if (corpus.Count == 0)
        {
            throw new InvalidOperationException($"No seed files in {corpusFolder}.");
        }

        var seedCount = corpus.Count;
        await using var temp = await TempStore.CreateAsync();
        var configPath = temp.Folder.File("shepherd.json");
        var spool = Directory.CreateDirectory(temp.Folder.File("spool")).FullName;
        var importer = new BatchImporter(temp.Store, new ImportOptions { MaxLineBytes = 16 * 1024, MaxErrors = 20, ChunkSize = 64 });
        var batches = 0;

        await using var server = await InProcessServer.StartAsync(new Shepherd.Simulator.SimulatorOptions(), concurrency: 4);
        var fileId = await UploadAsync(server.Http, Encoding.UTF8.GetBytes(HostileBodies.FileLine));

        // Each route's body with a hostile token in each position: swept in order, then drawn at random.
        var hostile = new Dictionary<string, List<byte[]>>(StringComparer.Ordinal)
        {
            ["/v1/batches"] = [.. HostileBodies.Of(HostileBodies.InlineCreate).Concat(HostileBodies.Of(HostileBodies.FileCreate(fileId))).Select(h => h.Bytes)],
            ["/v1/batches/estimate"] = [.. HostileBodies.Of(HostileBodies.InlineCreate).Concat(HostileBodies.Of(HostileBodies.FileCreate(fileId))).Select(h => h.Bytes)],
            ["/v1/messages/batches"] = [.. HostileBodies.Of(HostileBodies.AnthropicCreate).Select(h => h.Bytes)],
            ["/v1/files"] = [.. HostileBodies.Of(HostileBodies.FileLine).Select(h => h.Bytes)],
        };

        var targets = new (string Name, Target Run, Func<Exception, bool> Documented)[]
        {
            ("jsonl_import", async input =>
            {
                var result = await importer.ImportAsync(new MemoryStream(input, writable: false), new NewBatch($"batch_fuzz{++batches}", null), CancellationToken.None);
                var first = result.Errors.Count > 0 ? result.Errors[0] : null;
                return first is null ? "accepted" : $"{first.Code}: {first.Message}";
            }, _ => false),
            ("config_load", input =>
            {
                File.WriteAllBytes(configPath, input);
                ShepherdConfig.Load(configPath);
                return Task.FromResult<string?>("loaded");
            }, ex => ex is ConfigException),
            ("create_body", CreateBodyTarget(spool), ex => ex.GetType().Name == "ApiException"),
            ("http_batches", input => PostAsync(server.Http, "/v1/batches", input), _ => false),
            ("http_estimate", input => PostAsync(server.Http, "/v1/batches/estimate", input), _ => false),
            ("http_message_batches", input => PostAsync(server.Http, "/v1/messages/batches", input), _ => false),
            ("http_upload", input => UploadTargetAsync(server.Http, input), _ => false),
        };
        var routes = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["http_batches"] = "/v1/batches", ["http_estimate"] = "/v1/batches/estimate", ["http_message_batches"] = "/v1/messages/batches", ["http_upload"] = "/v1/files",
        };
        var bodiesSent = 0L;

        var stats = targets.ToDictionary(t => t.Name, _ => new TargetStats());
        var crashKinds = new Dictionary<string, CrashKind>(StringComparer.Ordinal);
        var hangs = new List<object>();
        var seenSignatures = new HashSet<string>(StringComparer.Ordinal);
        var watch = Stopwatch.StartNew();
        var total = 0L;
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            var input = total < seedCount ? corpus[(int)total] : Mutate(corpus, random);
            total++;
            foreach (var (name, run, documented) in targets)
            {
                var stat = stats[name];
                stat.Inputs++;
                var body = input;
                if (routes.TryGetValue(name, out var route))
                {
                    // Every other input of a route is one of its hostile bodies, mutated once the sweep is done.
                    bodiesSent++;
                    var bodies = hostile[route];
                    var sweep = stat.Inputs / 2;
                    body = stat.Inputs % 2 == 1 ? input
                        : sweep < bodies.Count ? bodies[(int)sweep]
                        : Mutate([bodies[random.Next(bodies.Count)]], random);
                }

                var took = Stopwatch.StartNew();
                string signature;
                Exception? crash = null;
                var task = Task.Run(() => run(body));
                try
                {
                    signature = await task.WaitAsync(AbandonAfter) ?? "null";
                }
                catch (TimeoutException)
                {
                    signature = "abandoned";
                }
                catch (Exception ex) when (documented(ex))
                {
                    signature = ex.GetType().Name + ": " + ex.Message;
                }
                catch (Exception ex)
                {
                    crash = ex;
                    signature = "CRASH " + ex.GetType().FullName;
                }

                took.Stop();
                var normalized = Normalize(signature, configPath, spool);
                stat.Signatures[normalized] = stat.Signatures.GetValueOrDefault(normalized) + 1;
                if (seenSignatures.Add(name + "|" + normalized) && total > seedCount && corpus.Count < 2000)
                {
                    // A new behaviour: keep the input as a parent for later mutations.
                    corpus.Add(input);
                }

                if (crash is not null)
                {
                    stat.Crashes++;

                    // One bug is one signature (target, exception, throwing frame of ours): keep its smallest inputs only.
                    var frame = crash.StackTrace?.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Contains("Shepherd.", StringComparison.Ordinal)) ?? "";
                    var key = $"{name}|{crash.GetType().FullName}|{crash.Message}|{frame}";
                    if (!crashKinds.TryGetValue(key, out var kind))
                    {
                        kind = new CrashKind(name, crash.GetType().FullName!, crash.Message, crash.StackTrace?.Split('\n').Take(8).Select(l => l.Trim()).ToArray() ?? []);
                        crashKinds[key] = kind;
                    }

                    kind.Count++;
                    if (kind.SmallestBytes is null || body.Length < kind.SmallestBytes)
                    {
                        kind.SmallestBytes = body.Length;
                        kind.File = Save(crashFolder, "crash", name, body, crash.ToString());
                    }
                }

                if (took.Elapsed > HangLimit)
                {
                    stat.Hangs++;
                    var file = Save(crashFolder, "hang", name, body, $"took {took.Elapsed.TotalSeconds:F1} s; {signature}");
                    if (hangs.Count < 20)
                    {
                        hangs.Add(new { Target = name, File = file, Seconds = Math.Round(took.Elapsed.TotalSeconds, 2), Bytes = body.Length });
                    }
                }

                stat.MaxMilliseconds = Math.Max(stat.MaxMilliseconds, took.Elapsed.TotalMilliseconds);
            }
        }

        return new
        {
            Scenario = "fuzz",
            Seconds = Math.Round(watch.Elapsed.TotalSeconds, 1),
            Seed = seed,
            SeedFiles = seedCount,
            CorpusAtEnd = corpus.Count,
            InputsTried = total,
            HttpBodiesSent = bodiesSent,
            InputsPerSecond = Math.Round(total / watch.Elapsed.TotalSeconds),
            Targets = stats.ToDictionary(s => s.Key, s => new
            {
                s.Value.Inputs,
                s.Value.Crashes,
                s.Value.Hangs,
                SlowestMs = Math.Round(s.Value.MaxMilliseconds, 1),
                DistinctOutcomes = s.Value.Signatures.Count,
                TopOutcomes = s.Value.Signatures.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).Take(20).Select(p => new { Outcome = p.Key, Count = p.Value }).ToArray(),
            }),
            Crashes = crashKinds.Values,
            Hangs = hangs,
            PeakWorkingSetMb = Math.Round(Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, 1),
            Note = "create_body is Shepherd.Server.Http.CreateBody.ReadAsync, reached by reflection (it is internal and Shepherd.Server grants no InternalsVisibleTo to the bench). "
                + "The http_ targets post to a server in this process: every other input is a create body with a hostile token (invalid UTF-8, a lone surrogate, 1e400, "
                + "a 23-digit number, deep nesting) in one of its positions; http_upload uploads the input as a file and creates and estimates a batch of it. "
                + "A crash there is a 5xx or a refusal outside the door's error envelope.",
        };
    }

    /// <summary>Posts <paramref name="body"/> as JSON; a 5xx or a refusal outside the door's envelope throws.</summary>
    private static async Task<string?> PostAsync(HttpClient http, string path, byte[] body)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync(path, content);
        return await OutcomeAsync(path, response);
    }

    /// <summary>Uploads <paramref name="file"/>, then creates and estimates a batch of it.</summary>
    private static async Task<string?> UploadTargetAsync(HttpClient http, byte[] file)
    {
        using var upload = await http.PostAsync("/v1/files", HostileBodies.Multipart("input.jsonl"u8.ToArray(), "batch"u8.ToArray(), file));
        var uploaded = await OutcomeAsync("/v1/files", upload);
        if (!upload.IsSuccessStatusCode)
        {
            return "upload " + uploaded;
        }

        var create = Encoding.UTF8.GetBytes(HostileBodies.FileCreate(JsonDocument.Parse(await upload.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!));
        return $"create {await PostAsync(http, "/v1/batches", create)}; estimate {await PostAsync(http, "/v1/batches/estimate", create)}";
    }

    private static async Task<string> UploadAsync(HttpClient http, byte[] file)
    {
        using var upload = await http.PostAsync("/v1/files", HostileBodies.Multipart("input.jsonl"u8.ToArray(), "batch"u8.ToArray(), file));
        upload.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await upload.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
    }

    private static async Task<string?> OutcomeAsync(string path, HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        var status = (int)response.StatusCode;
        if (HostileBodies.Fault(path, status, text) is { } fault)
        {
            throw new HttpFaultException($"{path}: {fault}");
        }

        var code = status == 200 ? "" : " " + (JsonDocument.Parse(text).RootElement.GetProperty("error") is var error && error.TryGetProperty("code", out var c) ? c.ToString() : error.GetProperty("type").GetString());
        return $"{status}{code}";
    }

    /// <summary>The server answered a hostile body with a 5xx or outside its door's envelope.</summary>
    private sealed class HttpFaultException(string message) : Exception(message);

    /// <summary>The server's create-body reader, which is internal, called through reflection.</summary>
    private static Target CreateBodyTarget(string spool)
    {
        var type = typeof(GatewayKey).Assembly.GetType("Shepherd.Server.Http.CreateBody", throwOnError: true)!;
        var read = type.GetMethod("ReadAsync", BindingFlags.Public | BindingFlags.Static)!;
        var count = type.GetProperty("RequestCount")!;
        return async input =>
        {
            var task = (Task)read.Invoke(null, [new MemoryStream(input, writable: false), spool, 1000L, 16 * 1024, CancellationToken.None])!;
            await task;
            using var body = (IDisposable)task.GetType().GetProperty("Result")!.GetValue(task)!;
            return $"read {((long)count.GetValue(body)! > 0 ? "with" : "without")} requests";
        };
    }

    private static byte[] Mutate(List<byte[]> corpus, Random random)
    {
        var data = new List<byte>(corpus[random.Next(corpus.Count)]);
        var rounds = 1 + random.Next(4);
        for (var r = 0; r < rounds; r++)
        {
            var at = data.Count == 0 ? 0 : random.Next(data.Count + 1);
            switch (random.Next(9))
            {
                case 0 when data.Count > 0:
                    var bit = random.Next(data.Count);
                    data[bit] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    data.InsertRange(at, Enumerable.Range(0, 1 + random.Next(8)).Select(_ => (byte)random.Next(256)));
                    break;
                case 2 when data.Count > 0:
                    var start = random.Next(data.Count);
                    data.RemoveRange(start, Math.Min(data.Count - start, 1 + random.Next(32)));
                    break;
                case 3:
                    var other = corpus[random.Next(corpus.Count)];
                    var cut = other.Length == 0 ? 0 : random.Next(other.Length);
                    data = [.. data.Take(at), .. other.Skip(cut)];
                    break;
                case 4 when data.Count > 0:
                    var from = random.Next(data.Count);
                    var chunk = data.GetRange(from, Math.Min(data.Count - from, 1 + random.Next(64)));
                    for (var i = random.Next(1, 50); i > 0; i--)
                    {
                        data.InsertRange(at, chunk);
                    }

                    break;
                case 5:
                    data.InsertRange(at, Enumerable.Repeat(random.Next(2) == 0 ? (byte)'{' : (byte)'[', 1 + random.Next(300)));
                    break;
                case 6:
                    byte[][] invalid = [[0xC3], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF], [0xEF, 0xBB, 0xBF], [0], [(byte)'\r'], [(byte)'\n']];
                    data.InsertRange(at, invalid[random.Next(invalid.Length)]);
                    break;
                case 7:
                    string[] tokens = ["\"custom_id\":\"a\",", "\"model\":\"m\",", "\"max_tokens\":1e400,", "99999999999999999999999", "\"requests\":[", "\"stream\":true,", "null", "\"\\ud800\"", "/*", "//", ",,", "\"upstreams\":[{", "\"store\":\"postgres://x@[::1\",", "\"baseUrl\":\"file:///etc\","];
                    data.InsertRange(at, Encoding.UTF8.GetBytes(tokens[random.Next(tokens.Length)]));
                    break;
                default:
                    if (data.Count > 0)
                    {
                        var a = random.Next(data.Count);
                        const string Structural = "{}[]\":,\\ \n0";
                        data[a] = (byte)Structural[random.Next(Structural.Length)];
                    }

                    break;
            }

            if (data.Count > MaxInputBytes)
            {
                data.RemoveRange(MaxInputBytes, data.Count - MaxInputBytes);
            }
        }

        return [.. data];
    }

    /// <summary>Numbers and paths out, so messages that differ only by position or id count as one.</summary>
    private static string Normalize(string signature, string configPath, string spool)
    {
        var text = signature.Replace(configPath, "<config>", StringComparison.Ordinal).Replace(spool, "<spool>", StringComparison.Ordinal);
        text = Quoted().Replace(text, "\"…\"");
        text = Digits().Replace(text, "#");
        return text.Length > 160 ? text[..160] : text;
    }

    private static string Save(string folder, string kind, string target, byte[] input, string details)
    {
        Directory.CreateDirectory(folder);
        var hash = Convert.ToHexStringLower(SHA256.HashData(input))[..16];
        var path = Path.Combine(folder, $"{kind}-{target}-{hash}");
        File.WriteAllBytes(path + ".bin", input);
        File.WriteAllText(path + ".txt", details);
        return path + ".bin";
    }

    [GeneratedRegex("[0-9]+")]
    private static partial Regex Digits();

    [GeneratedRegex("\"[^\"]{0,80}\"")]
    private static partial Regex Quoted();

    private sealed class CrashKind(string target, string exception, string message, string[] stack)
    {
        public string Target { get; } = target;

        public string Exception { get; } = exception;

        public string Message { get; } = message;

        public long Count { get; set; }

        public int? SmallestBytes { get; set; }

        public string? File { get; set; }

        public string[] Stack { get; } = stack;
    }

    private sealed class TargetStats
    {
        public long Inputs { get; set; }

        public long Crashes { get; set; }

        public long Hangs { get; set; }

        public double MaxMilliseconds { get; set; }

        public Dictionary<string, long> Signatures { get; } = new(StringComparer.Ordinal);
    }
}
