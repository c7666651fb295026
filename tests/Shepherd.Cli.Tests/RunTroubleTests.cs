using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Cli.Tests;

/// <summary>
/// <c>shepherd run</c> when it cannot go on: a refused key, an upstream that cannot be reached
/// before or during the run, and outputs or inputs that cannot be used. Each ends with its own
/// exit code and one clear line, having spent nothing it did not have to, and leaves what a run
/// after it needs.
/// </summary>
public sealed class RunTroubleTests : IDisposable
{
    private const string RightKey = "sk-right-key";
    private readonly TempDirectory _folder = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _folder.Dispose();

    private static string OpenAIUrl(SimulatorServer server) => new Uri(server.BaseUrl, "v1").ToString();

    private static string[] Run(string input, string baseUrl, string key, params string[] more) =>
        ["run", input, "--base-url", baseUrl, "--api-key", key, "--progress", "none", .. more];

    /// <summary>The port of a simulator that was started and stopped: nothing listens there any more.</summary>
    private static async Task<int> ClosedPortAsync()
    {
        var server = await Simulators.StartHttpAsync();
        var port = server.BaseUrl.Port;
        await server.DisposeAsync();
        return port;
    }

    /// <summary>The one stderr line that says why the run stopped (the ones that start <c>shepherd: </c>).</summary>
    private static string Reason(ProcessResult result)
    {
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("shepherd: ", StringComparison.Ordinal)).ToList();
        Assert.True(lines.Count == 1, "not one shepherd: line on stderr: " + result);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        return lines[0];
    }

    private string[] FilesLeft() => [.. Directory.GetFiles(_folder.Path).Select(Path.GetFileName).Order()!];

    [Theory]
    [InlineData(null, 8)]
    [InlineData("3", 3)]
    public async Task AWrongKey_StopsTheRunWithinTheConcurrency_AndTheRightKeyFinishesIt(string? concurrency, int most)
    {
        var requests = BatchFiles.OpenAIChat(40);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });
        string[] limit = concurrency is null ? [] : ["--concurrency", concurrency];

        // One attempt each: a refusal that used it would end its request failed, and the second run could not finish.
        var refused = await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), "sk-wrong-key", ["--max-attempts", "1", .. limit]));

        Assert.True(refused.ExitCode == 5, refused.ToString());
        Assert.StartsWith(
            $"shepherd: 127.0.0.1:{server.BaseUrl.Port} refused the API key for gpt-4.1-mini (HTTP 401: Incorrect API key provided",
            Reason(refused), StringComparison.Ordinal);
        Assert.Contains("Fix the key (--api-key)", refused.Stderr, StringComparison.Ordinal);
        var sent = server.Provider.Stats();
        Assert.InRange(sent.Requests, 1, most);
        Assert.Equal(sent.Requests, sent.ByStatus[401]);
        // Nothing is written for a run that did not end; its state stays for the next one.
        Assert.Equal(["in.jsonl", "in.jsonl.shepherd.db"], FilesLeft());

        var fixedKey = await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), RightKey, ["--max-attempts", "1", .. limit]));

        Assert.True(fixedKey.ExitCode == 0, fixedKey.ToString());
        Assert.Equal(requests.Select(r => r.CustomId), BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()));
        var executed = server.Provider.ExecutedCounts();
        Assert.Equal(40, executed.Count);
        Assert.All(requests, r => Assert.Equal(1, executed[r.Key]));
    }

    [Theory]
    [InlineData(403, """{"type":"error","error":{"type":"permission_error","message":"This key may not use this model."}}""", "HTTP 403: This key may not use this model.")]
    [InlineData(400, """{"error":{"message":"The key was revoked.","type":"invalid_request_error","code":"invalid_api_key"}}""", "HTTP 400: The key was revoked.")]
    [InlineData(401, """{"error":{"message":"Incorrect API key provided: sk-forbidden-key.","type":"invalid_request_error","code":"invalid_api_key"}}""", "HTTP 401: Incorrect API key provided: ***.")]
    public async Task AForbiddenKeyOrAnAuthenticationErrorBody_StopsTheRunAsARefusedKey_WithoutRepeatingTheKey(int status, string body, string reason)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(30));
        await using var provider = RefusingProvider.Start(status, body);

        var refused = await ShepherdProcess.RunAsync(_folder.Path, Run(input, provider.BaseUrl + "v1", "sk-forbidden-key", "--max-attempts", "1"));

        Assert.True(refused.ExitCode == 5, refused.ToString());
        Assert.StartsWith($"shepherd: 127.0.0.1:{provider.Port} refused the API key for gpt-4.1-mini ({reason})", Reason(refused), StringComparison.Ordinal);
        Assert.DoesNotContain("sk-forbidden-key", refused.Stdout + refused.Stderr, StringComparison.Ordinal);
        Assert.InRange(provider.Posts, 1, 8);
        Assert.Equal(["in.jsonl", "in.jsonl.shepherd.db"], FilesLeft());
    }

    [Fact]
    public async Task AWrongKey_ForAnthropicInput_StopsTheRun_WithTheProvidersMessage()
    {
        var input = BatchFiles.Write(_folder.File("docs.jsonl"), BatchFiles.Anthropic(12));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });

        var refused = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--provider", "anthropic", "--base-url", server.BaseUrl.ToString(), "--api-key", "sk-ant-wrong", "--progress", "none");

        Assert.True(refused.ExitCode == 5, refused.ToString());
        Assert.StartsWith(
            $"shepherd: 127.0.0.1:{server.BaseUrl.Port} refused the API key for claude-haiku-4.5 (HTTP 401: invalid x-api-key)",
            Reason(refused), StringComparison.Ordinal);
        Assert.InRange(server.Provider.Stats().Requests, 1, 8);
        Assert.Empty(server.Provider.ExecutedCounts());
        Assert.Equal(["docs.jsonl", "docs.jsonl.shepherd.db"], FilesLeft());
    }

    [Fact]
    public async Task TheProgressLine_NamesTheUpstreamThatRefusesTheKey()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(20));
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });

        var refused = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", OpenAIUrl(server), "--api-key", "sk-wrong-key", "--progress", "plain");

        Assert.True(refused.ExitCode == 5, refused.ToString());
        // The last progress line is drawn as the run stops, whatever the 5 s rhythm.
        var line = refused.Stdout.Split('\n').Last(l => l.StartsWith('['));
        Assert.Contains($"127.0.0.1:{server.BaseUrl.Port} refuses the key for gpt-4.1-mini (HTTP 401: Incorrect API key provided", line, StringComparison.Ordinal);
        Assert.Contains("0/20 done", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUpstreamThatRefusesItsKey_IsLeftAside_WhileAnotherServesEveryRequest()
    {
        var requests = BatchFiles.OpenAIChat(40);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var refusing = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });
        await using var taking = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });
        var config = _folder.File("shepherd.json");
        await File.WriteAllTextAsync(config, $$"""
            {
              "upstreams": [
                { "name": "stale", "baseUrl": "{{OpenAIUrl(refusing)}}", "apiKey": "sk-revoked" },
                { "name": "fresh", "baseUrl": "{{OpenAIUrl(taking)}}", "apiKey": "{{RightKey}}" }
              ]
            }
            """, Ct);

        var result = await ShepherdProcess.RunAsync(_folder.Path, "run", input, "--config", config, "--max-attempts", "1", "--progress", "none");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(requests.Select(r => r.CustomId), BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()));
        Assert.Empty(File.ReadAllText(_folder.File("in.errors.jsonl")));
        // Some went to the upstream that refuses the key; with one attempt each, they could only finish by going to the other.
        var refused = refusing.Provider.Stats();
        Assert.InRange(refused.Requests, 1, 8);
        Assert.Equal(refused.Requests, refused.ByStatus.GetValueOrDefault(401));
        var executed = taking.Provider.ExecutedCounts();
        Assert.All(requests, r => Assert.Equal(1, executed[r.Key]));
    }

    [Fact]
    public async Task AClosedPort_ExitsSix_BeforeAnythingIsStoredOrSent()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(5));
        var port = await ClosedPortAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, $"http://127.0.0.1:{port}/v1", "k"));

        Assert.True(result.ExitCode == 6, result.ToString());
        Assert.StartsWith($"shepherd: cannot connect to 127.0.0.1:{port}: connection refused", Reason(result), StringComparison.Ordinal);
        Assert.Contains("Nothing was sent", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(["in.jsonl"], FilesLeft());
    }

    [Fact]
    public async Task AClosedPort_ForASavedBatch_KeepsItsState_AndALiveUpstreamFinishesIt()
    {
        var requests = BatchFiles.OpenAIChat(10);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { ApiKey = RightKey });
        // A refused key leaves a saved batch with nothing done.
        Assert.Equal(5, (await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), "sk-wrong-key"))).ExitCode);
        var port = await ClosedPortAsync();

        var unreachable = await ShepherdProcess.RunAsync(_folder.Path, Run(input, $"http://127.0.0.1:{port}/v1", RightKey));
        var resumed = await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), RightKey));

        Assert.True(unreachable.ExitCode == 6, unreachable.ToString());
        Assert.Contains("Nothing was sent; 0 of 10 requests done and saved", Reason(unreachable), StringComparison.Ordinal);
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Equal(10, BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Count);
        Assert.All(requests, r => Assert.Equal(1, server.Provider.ExecutedCounts()[r.Key]));
    }

    [Fact]
    public async Task AStoppedRun_StillPrintsOneJsonDocument_SayingWhy()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));
        var port = await ClosedPortAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run(input, $"http://127.0.0.1:{port}/v1", RightKey, "--json"));

        Assert.True(result.ExitCode == 6, result.ToString());
        var json = System.Text.Json.JsonDocument.Parse(result.Stdout).RootElement;
        Assert.Equal(("stopped", "unreachable", 6), (json.GetProperty("status").GetString(), json.GetProperty("stopped").GetString(), json.GetProperty("exit_code").GetInt32()));
        Assert.StartsWith($"shepherd: cannot connect to 127.0.0.1:{port}", json.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABatchThatHasEnded_IsWrittenAgain_WithoutAskingItsUpstream()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(5));
        await using (var server = await Simulators.StartHttpAsync())
        {
            Assert.Equal(0, (await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), RightKey))).ExitCode);
        }

        File.Delete(_folder.File("in.out.jsonl"));
        var port = await ClosedPortAsync();

        var again = await ShepherdProcess.RunAsync(_folder.Path, Run(input, $"http://127.0.0.1:{port}/v1", RightKey));

        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("already completed: nothing to send", again.Stderr, StringComparison.Ordinal);
        Assert.Equal(5, BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Count);
    }

    [Fact]
    public async Task OneUpstreamOfTwoClosed_IsWarnedAbout_AndTheOtherServesEverything()
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(20));
        await using var up = await Simulators.StartHttpAsync();
        var port = await ClosedPortAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--upstream", $"http://127.0.0.1:{port}/v1", "--upstream", OpenAIUrl(up), "--api-key", "k", "--progress", "none");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"warning: cannot connect to 127.0.0.1:{port}: connection refused", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(20, up.Provider.Stats().ByStatus[200]);
        Assert.Equal(20, BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Count);
    }

    [Fact]
    public async Task AnOutageLongerThanMaxOutage_ExitsSix_KeepsEveryAnswer_AndARunAfterItFinishes()
    {
        var requests = BatchFiles.OpenAIChat(150);
        var input = BatchFiles.Write(_folder.File("in.jsonl"), requests);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5) });
        // Down from the 40th request on, mid-run: every connection is reset.
        server.Provider.RequestReceived += total =>
        {
            if (total == 40)
            {
                server.Provider.Down = true;
            }
        };

        var clock = Stopwatch.StartNew();
        var stopped = await ShepherdProcess.RunAsync(_folder.Path,
            "run", input, "--base-url", OpenAIUrl(server), "--api-key", "k", "--max-outage", "3s", "--progress", "plain");
        clock.Stop();

        Assert.True(stopped.ExitCode == 6, stopped.ToString());
        var port = server.BaseUrl.Port;
        Assert.Matches($@"^shepherd: 127\.0\.0\.1:{port} has been down for \d+s \(.+\), longer than --max-outage 3s; \d+ of 150 requests done and saved", Reason(stopped));
        Assert.Contains($"127.0.0.1:{port} is down", stopped.Stdout.Split('\n').Last(l => l.StartsWith('[')), StringComparison.Ordinal);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(3), $"gave up after {clock.Elapsed}");
        Assert.Equal(["in.jsonl", "in.jsonl.shepherd.db"], FilesLeft());
        // Some answers came before the outage (a few requests already past the simulator's door still get theirs), not all.
        Assert.InRange(server.Provider.ExecutedCounts().Count, 1, 149);

        server.Provider.Down = false;
        var resumed = await ShepherdProcess.RunAsync(_folder.Path, Run(input, OpenAIUrl(server), "k"));

        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Contains("Resuming", resumed.Stderr, StringComparison.Ordinal);
        Assert.Equal(requests.Select(r => r.CustomId), BatchFiles.ReadJsonl(_folder.File("in.out.jsonl")).Select(l => l.GetProperty("custom_id").GetString()));
        // What was answered before the outage was saved, so it is not asked again.
        var executed = server.Provider.ExecutedCounts();
        Assert.All(requests, r => Assert.Equal(1, executed[r.Key]));
    }

    [Theory]
    [InlineData("--output /nonexistent/shepherd/out.jsonl", "--output: the folder /nonexistent/shepherd does not exist")]
    [InlineData("--output in.jsonl", "--output in.jsonl is the input file")]
    [InlineData("--output outdir", "--output outdir is a folder")]
    [InlineData("--errors outdir", "--errors outdir is a folder")]
    [InlineData("--output same.jsonl --errors same.jsonl", "--output and --errors both name same.jsonl")]
    public async Task AnOutputThatCannotBeWritten_IsRefusedBeforeAnythingIsStoredOrSent(string flags, string message)
    {
        var input = BatchFiles.Write(_folder.File("in.jsonl"), BatchFiles.OpenAIChat(3));
        Directory.CreateDirectory(_folder.File("outdir"));
        await using var server = await Simulators.StartHttpAsync();

        var result = await ShepherdProcess.RunAsync(_folder.Path, Run("in.jsonl", OpenAIUrl(server), "k", flags.Split(' ')));

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(0, server.Provider.Stats().Requests);
        Assert.Equal([Path.GetFileName(input)], FilesLeft());
        Assert.Empty(Directory.GetFiles(_folder.File("outdir")));
    }

    [Theory]
    [InlineData("run", "folder", "is a folder")]
    [InlineData("run", "empty", "is empty, or is not a regular file")]
    [InlineData("run", "fifo", "is empty, or is not a regular file")]
    [InlineData("estimate", "folder", "is a folder")]
    [InlineData("estimate", "fifo", "is empty, or is not a regular file")]
    [InlineData("submit", "folder", "is a folder")]
    [InlineData("submit", "fifo", "is empty, or is not a regular file")]
    public async Task AnInputThatIsNotABatchFile_IsRefusedAtOnce_LeavingNothing(string command, string kind, string message)
    {
        var input = _folder.File("batch.jsonl");
        switch (kind)
        {
            case "folder":
                Directory.CreateDirectory(input);
                break;
            case "empty":
                await File.WriteAllTextAsync(input, "", Ct);
                break;
            default:
                // A pipe with no writer: reading it would wait forever.
                using (var mkfifo = Process.Start("mkfifo", [input]))
                {
                    await mkfifo.WaitForExitAsync(Ct);
                    Assert.Equal(0, mkfifo.ExitCode);
                }

                break;
        }

        string[] args = command switch
        {
            "run" => ["run", input, "--base-url", "http://127.0.0.1:1/v1", "--api-key", "k"],
            "submit" => ["submit", input, "--server", "http://127.0.0.1:1", "--api-key", "k"],
            _ => [command, input],
        };
        var result = await ShepherdProcess.RunAsync(_folder.Path, args).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("batch.jsonl " + message, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(input + ".shepherd.db"));
        Assert.Equal(kind == "folder" ? [] : ["batch.jsonl"], FilesLeft());
    }
}

/// <summary>A provider on 127.0.0.1 that answers HEAD (the check before sending) and refuses every POST with one status and body.</summary>
internal sealed class RefusingProvider : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _serving;
    private int _posts;

    private RefusingProvider(int port, int status, string body)
    {
        Port = port;
        _listener.Prefixes.Add(BaseUrl);
        _listener.Start();
        _serving = ServeAsync(status, Encoding.UTF8.GetBytes(body));
    }

    public int Port { get; }

    public string BaseUrl => $"http://127.0.0.1:{Port}/";

    /// <summary>The requests refused so far.</summary>
    public int Posts => Volatile.Read(ref _posts);

    public static RefusingProvider Start(int status, string body)
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return new RefusingProvider(port, status, body);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        try
        {
            await _serving;
        }
        catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
        {
            // Stopping the listener ends the wait for the next request.
        }

        _listener.Close();
    }

    private async Task ServeAsync(int status, byte[] body)
    {
        while (_listener.IsListening)
        {
            var context = await _listener.GetContextAsync();
            if (context.Request.HttpMethod == "POST")
            {
                Interlocked.Increment(ref _posts);
                context.Response.StatusCode = status;
                context.Response.ContentType = "application/json";
                await context.Response.OutputStream.WriteAsync(body);
            }

            context.Response.Close();
        }
    }
}
