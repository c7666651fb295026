using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shepherd.Engine;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// A real Shepherd server on 127.0.0.1 (a free port), its engine sending to the simulated
/// provider over real HTTP, its store in a temporary folder.
/// </summary>
public sealed class RunningServer : IAsyncDisposable
{
    private readonly bool _ownsSimulator;
    private readonly TempDirectory? _folder;
    private bool _handedOver;

    private RunningServer(ShepherdServer server, SimulatorServer simulator, bool ownsSimulator, TempDirectory? folder, string statePath)
    {
        Server = server;
        Simulator = simulator;
        _ownsSimulator = ownsSimulator;
        _folder = folder;
        StatePath = statePath;
        Http = Client(Key);
    }

    /// <summary>The key of the first tenant; every server here has two.</summary>
    public const string Key = "sk-tenant-one";

    /// <summary>The key of the second tenant.</summary>
    public const string OtherKey = "sk-tenant-two";

    /// <summary>The key the server presents to the provider; no client may ever see it.</summary>
    public const string UpstreamKey = "sk-upstream-secret";

    public ShepherdServer Server { get; }

    public SimulatorServer Simulator { get; }

    public string StatePath { get; }

    /// <summary>A client of the first tenant.</summary>
    public HttpClient Http { get; }

    public Uri BaseUrl => Server.BaseUrl;

    public IBatchStore Store => Server.Services.GetRequiredService<IBatchStore>();

    public static async Task<RunningServer> StartAsync(
        SimulatorOptions? simulator = null,
        Action<ServerOptions>? tune = null,
        TimeProvider? time = null,
        Action<UpstreamOptions>? upstream = null,
        Action<ShepherdEngineOptions>? engine = null,
        PostgresStoreOptions? sharedStore = null)
    {
        var folder = new TempDirectory();
        var sim = await Simulators.StartHttpAsync(simulator ?? new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2) });
        return new RunningServer(await StartServerAsync(sim, folder.File("shepherd.db"), tune, time, upstream, engine, sharedStore), sim, ownsSimulator: true, folder, folder.File("shepherd.db"));
    }

    /// <summary>
    /// Stops this server and starts another on the same store and simulator, as a restart would;
    /// the new one owns both. <paramref name="whileStopped"/> runs in between, on the store file.
    /// </summary>
    /// <param name="whileStopped">Runs while no server is up.</param>
    /// <param name="upstream">Changes the new server's upstream, as at <see cref="StartAsync"/>.</param>
    /// <param name="engine">Changes the new server's engine options (dispatch, native runs), as at <see cref="StartAsync"/>.</param>
    /// <param name="samePort">Listens where this one did, as a server restarted in place does (otherwise on a free port).</param>
    /// <param name="tune">Changes the new server's options, as at <see cref="StartAsync"/>.</param>
    public async Task<RunningServer> RestartAsync(Func<Task>? whileStopped = null, Action<UpstreamOptions>? upstream = null, Action<ShepherdEngineOptions>? engine = null, bool samePort = false, Action<ServerOptions>? tune = null)
    {
        var url = BaseUrl.ToString().TrimEnd('/');
        await Server.DisposeAsync();
        Http.Dispose();
        if (whileStopped is not null)
        {
            await whileStopped();
        }

        _handedOver = true;
        Action<ServerOptions> listen = o =>
        {
            tune?.Invoke(o);
            if (samePort)
            {
                o.Urls = [url];
            }
        };
        return new RunningServer(await StartServerAsync(Simulator, StatePath, listen, null, upstream, engine), Simulator, _ownsSimulator, _folder, StatePath);
    }

    private static async Task<ShepherdServer> StartServerAsync(
        SimulatorServer sim, string state, Action<ServerOptions>? tune, TimeProvider? time, Action<UpstreamOptions>? tuneUpstream, Action<ShepherdEngineOptions>? tuneEngine, PostgresStoreOptions? sharedStore = null)
    {
        var options = new ServerOptions
        {
            Urls = ["http://127.0.0.1:0"],
            GatewayKeys = [new GatewayKey(new Secret(Key), "tenant-one"), new GatewayKey(new Secret(OtherKey))],
        };
        tune?.Invoke(options);
        var upstream = new UpstreamOptions { Name = "sim", BaseUrl = new Uri(sim.BaseUrl, "v1"), ApiKey = new Secret(UpstreamKey) };
        tuneUpstream?.Invoke(upstream);
        var engine = new ShepherdEngineOptions
        {
            Store = new SqliteStoreOptions { Path = state },
            SharedStore = sharedStore,
            Upstreams = [upstream],
            Dispatch = new() { RetryBaseDelay = TimeSpan.FromMilliseconds(20), RetryMaxDelay = TimeSpan.FromMilliseconds(100), IdlePollInterval = TimeSpan.FromMilliseconds(200) },
        };
        tuneEngine?.Invoke(engine);
        return await ShepherdServer.StartAsync(options, engine, (builder, _) =>
        {
            builder.Logging.ClearProviders();
            if (time is not null)
            {
                builder.Services.AddSingleton(time);
            }
        }, TestContext.Current.CancellationToken);
    }

    /// <summary>Waits until the server's answer cache has written <paramref name="entries"/> answers (it writes behind, in groups).</summary>
    public Task WaitForKeptAnswersAsync(long entries) =>
        Poll.UntilAsync(async () => (await Server.Services.GetRequiredService<Dispatcher>().AnswerCache!.StatsAsync(TestContext.Current.CancellationToken)).Entries == entries,
            TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

    /// <summary>The upstream of a server that hands its native work to <paramref name="provider"/>'s batch APIs.</summary>
    public static Action<UpstreamOptions> ProviderUpstream(RunningServer provider) => u =>
    {
        u.Name = "provider";
        u.BaseUrl = new Uri(provider.BaseUrl, "v1");
        u.ApiKey = new Secret(RunningServer.Key);
        u.BatchApi = true;
    };

    /// <summary>A server whose upstream is <paramref name="provider"/>, with its batch API, looked at every <paramref name="poll"/> (0.1 s unless given).</summary>
    public static Task<RunningServer> StartAgainstAsync(RunningServer provider, TimeSpan? poll = null, int? maxAttempts = null, Action<ServerOptions>? tune = null) =>
        StartAsync(tune: tune, upstream: ProviderUpstream(provider), engine: e =>
        {
            e.Native.PollInterval = poll ?? TimeSpan.FromMilliseconds(100);
            if (maxAttempts is { } attempts)
            {
                e.Dispatch.MaxAttempts = attempts;
            }
        });

    /// <summary>A client presenting <paramref name="key"/> (or no key).</summary>
    public HttpClient Client(string? key)
    {
        var http = new HttpClient { BaseAddress = BaseUrl };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return http;
    }

    /// <summary>Sends JSON and returns the status and the parsed answer.</summary>
    public static async Task<(int Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string path, string? json = null, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        using var response = await http.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return ((int)response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public Task<(int Status, JsonElement Body)> GetAsync(string path) => SendAsync(Http, HttpMethod.Get, path);

    /// <summary>Uploads <paramref name="lines"/> as a batch input file of the first tenant and returns its id.</summary>
    public async Task<string> UploadAsync(IEnumerable<string> lines)
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n")), "file", "input.jsonl" },
        };
        using var response = await Http.PostAsync("/v1/files", form, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    public Task<(int Status, JsonElement Body)> PostAsync(string path, string? json = null, string? idempotencyKey = null) =>
        SendAsync(Http, HttpMethod.Post, path, json, idempotencyKey);

    /// <summary>Polls a batch (either door) until <paramref name="done"/> holds; gives up after a minute.</summary>
    public Task<JsonElement> WaitForAsync(string path, Func<JsonElement, bool> done) =>
        Poll.UntilAsync(async () =>
        {
            var (status, body) = await GetAsync(path);
            Assert.Equal(200, status);
            return body;
        }, done, cancellationToken: TestContext.Current.CancellationToken);

    /// <summary>Polls an OpenAI-door batch until its status is one of the ended ones.</summary>
    public Task<JsonElement> WaitForEndAsync(string batchId) =>
        WaitForAsync($"/v1/batches/{batchId}", b => b.GetProperty("status").GetString() is "completed" or "failed" or "cancelled" or "expired");

    public async ValueTask DisposeAsync()
    {
        if (_handedOver)
        {
            return;
        }

        Http.Dispose();
        await Server.DisposeAsync();
        if (_ownsSimulator)
        {
            await Simulator.DisposeAsync();
        }

        _folder?.Dispose();
    }
}
