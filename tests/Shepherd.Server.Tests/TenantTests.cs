using System.Net;
using System.Security.Cryptography;
using System.Text;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;

namespace Shepherd.Server.Tests;

/// <summary>What a key may do (its scopes), what an admin sees, and each tenant's limits, answered in the door's envelope.</summary>
public sealed class TenantTests
{
    private const string ReaderKey = "sk-reader";
    private const string WriterKey = "sk-writer";
    private const string AdminKey = "sk-admin";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Prompts(int count) =>
        $$"""{"model":"gpt-4o-mini","requests":[{{string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"q{{i}}","prompt":"question {{i}}"}"""))}}]}""";

    private static Task<RunningServer> StartAsync(params GatewayKey[] more) =>
        RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(100) },
            tune: options => options.GatewayKeys = [.. options.GatewayKeys, .. more]);

    [Fact]
    public async Task AReadOnlyKey_ReadsButCannotCreate_AndASubmitOnlyKeyCannotRead()
    {
        await using var server = await StartAsync(
            new GatewayKey(new Secret(ReaderKey), "tenant-one") { Scopes = KeyScopes.Read },
            new GatewayKey(new Secret(WriterKey), "tenant-w") { Scopes = KeyScopes.Submit });
        var (_, created) = await server.PostAsync("/v1/batches", Prompts(1));
        using var reader = server.Client(ReaderKey);
        using var writer = server.Client(WriterKey);

        var (read, batch) = await RunningServer.SendAsync(reader, HttpMethod.Get, $"/v1/batches/{created.GetProperty("id").GetString()}");
        var (denied, envelope) = await RunningServer.SendAsync(reader, HttpMethod.Post, "/v1/batches", Prompts(1));
        var (deniedAnthropic, anthropicEnvelope) = await RunningServer.SendAsync(reader, HttpMethod.Post, "/v1/messages/batches",
            """{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}}]}""");
        var (estimate, _) = await RunningServer.SendAsync(reader, HttpMethod.Post, "/v1/batches/estimate", Prompts(1));
        var (writerReads, _) = await RunningServer.SendAsync(writer, HttpMethod.Get, "/v1/batches");
        var (writerCreates, _) = await RunningServer.SendAsync(writer, HttpMethod.Post, "/v1/batches", Prompts(1));

        Assert.Equal((200, created.GetProperty("id").GetString()), (read, batch.GetProperty("id").GetString()));
        Assert.Equal(403, denied);
        Assert.Equal("permission_denied", envelope.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("submit scope", envelope.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(403, deniedAnthropic);
        Assert.Equal("error", anthropicEnvelope.GetProperty("type").GetString());
        Assert.Equal(200, estimate);
        Assert.Equal(403, writerReads);
        Assert.Equal(200, writerCreates);
    }

    [Fact]
    public async Task AnAdminKey_SeesAndCancelsEveryTenantsBatches_AndAnotherTenantStillSeesOnlyItsOwn()
    {
        await using var server = await StartAsync(new GatewayKey(new Secret(AdminKey), "ops") { Scopes = KeyScopes.Admin });
        var (_, mine) = await server.PostAsync("/v1/batches", Prompts(50));
        using var other = server.Client(RunningServer.OtherKey);
        var (_, theirs) = await RunningServer.SendAsync(other, HttpMethod.Post, "/v1/batches", Prompts(1));
        using var admin = server.Client(AdminKey);

        var (_, list) = await RunningServer.SendAsync(admin, HttpMethod.Get, "/v1/batches");
        var (_, dashboard) = await RunningServer.SendAsync(admin, HttpMethod.Get, "/v1/dashboard/batches");
        var (cancelStatus, cancelled) = await RunningServer.SendAsync(admin, HttpMethod.Post, $"/v1/batches/{mine.GetProperty("id").GetString()}/cancel");
        var (_, otherList) = await RunningServer.SendAsync(other, HttpMethod.Get, "/v1/batches");

        var ids = new[] { mine.GetProperty("id").GetString(), theirs.GetProperty("id").GetString() };
        Assert.Equal(ids.Order(), list.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()).Order());
        Assert.Equal(ids.Order(), dashboard.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()).Order());
        Assert.Equal(200, cancelStatus);
        Assert.True(cancelled.GetProperty("status").GetString() is "cancelling" or "cancelled");
        Assert.Equal([theirs.GetProperty("id").GetString()], otherList.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()));
    }

    [Fact]
    public async Task ATenantOverItsCallRate_Gets429WithRetryAfter_AndOthersAreNotHeldBack()
    {
        await using var limited = await RunningServer.StartAsync(tune: options => options.GatewayKeys =
            [new GatewayKey(new Secret(RunningServer.Key), "tenant-one") { Limits = new TenantLimits(RequestsPerMinute: 60) }, new GatewayKey(new Secret(RunningServer.OtherKey))]);
        using var http = limited.Client(RunningServer.Key);
        using var other = limited.Client(RunningServer.OtherKey);

        using var first = await http.GetAsync("/v1/batches", Ct);
        using var second = await http.GetAsync("/v1/batches", Ct);
        using var others = await other.GetAsync("/v1/batches", Ct);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.NotNull(second.Headers.RetryAfter);
        Assert.Contains("60 a minute", await second.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, others.StatusCode);
    }

    [Fact]
    public async Task OpenBatchesQueuedRequestsAndFileSize_AreLimitedPerTenant()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(500) }, tune: options => options.GatewayKeys =
            [new GatewayKey(new Secret(RunningServer.Key), "tenant-one") { Limits = new TenantLimits(OpenBatches: 2, QueuedItems: 10, MaxFileBytes: 100) }, new GatewayKey(new Secret(RunningServer.OtherKey))]);

        var (first, _) = await server.PostAsync("/v1/batches", Prompts(8));
        var (tooMany, refusal) = await server.PostAsync("/v1/batches", Prompts(5));
        var (fits, _) = await server.PostAsync("/v1/batches", Prompts(2));
        var (thirdOpen, openRefusal) = await server.PostAsync("/v1/batches", Prompts(1));
        using var http = server.Client(RunningServer.Key);
        using var upload = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(new string('x', 200))), "file", "big.jsonl" },
        };
        using var uploaded = await http.PostAsync("/v1/files", upload, Ct);
        using var other = server.Client(RunningServer.OtherKey);
        var (othersCreate, _) = await RunningServer.SendAsync(other, HttpMethod.Post, "/v1/batches", Prompts(20));

        Assert.Equal(200, first);
        Assert.Equal(429, tooMany);
        Assert.Equal("queued_items_limit", refusal.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(200, fits);
        Assert.Equal(429, thirdOpen);
        Assert.Equal("open_batches_limit", openRefusal.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, uploaded.StatusCode);
        Assert.Equal(200, othersCreate);
        // A refused create leaves nothing behind.
        var (_, list) = await server.GetAsync("/v1/batches");
        Assert.Equal(2, list.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task AKeyGivenByItsSha256_LetsItsHolderIn()
    {
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("sk-hashed-only")));
        await using var server = await RunningServer.StartAsync(tune: options => options.GatewayKeys = [new GatewayKey(sha256, "hashed")]);
        using var http = server.Client("sk-hashed-only");
        using var wrong = server.Client(sha256);

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v1/batches", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await wrong.GetAsync("/v1/batches", Ct)).StatusCode);
    }
}
