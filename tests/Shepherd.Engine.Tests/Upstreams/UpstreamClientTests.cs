using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Upstreams;

public sealed class UpstreamClientTests
{
    private static readonly byte[] Body = """{"model":"m","messages":[]}"""u8.ToArray();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private UpstreamClient Client(HttpMessageHandler handler, UpstreamOptions options) => new(new HttpClient(handler), options, _time);

    [Theory]
    [InlineData("https://api.openai.com/v1", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions")]
    [InlineData("https://relay.example/v1/", "/v1/embeddings", "https://relay.example/v1/embeddings")]
    [InlineData("https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages")]
    [InlineData("http://127.0.0.1:8080/openai/v1", "/v1/responses", "http://127.0.0.1:8080/openai/v1/responses")]
    [InlineData("http://127.0.0.1:8080/proxy", "/v1/completions", "http://127.0.0.1:8080/proxy/v1/completions")]
    public void Urls_JoinWithoutDoublingV1(string baseUrl, string url, string expected)
    {
        var client = Client(new ScriptedHandler(), new UpstreamOptions { BaseUrl = new Uri(baseUrl) });

        Assert.Equal(new Uri(expected), client.TargetOf(url));
    }

    [Fact]
    public async Task OpenAI_SendsTheBodyUnchanged_WithABearerKey()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, "{}", ("x-request-id", "req_1")));
        var client = Client(handler, new UpstreamOptions { ApiKey = new Secret("sk-test") });

        var response = await client.SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        var (request, body) = Assert.Single(handler.Received);
        Assert.Equal(HttpMethod.Post, request.Method);
        Assert.Equal("Bearer sk-test", request.Headers.Authorization?.ToString());
        Assert.False(request.Headers.Contains("x-api-key"));
        Assert.Equal("application/json", request.Content?.Headers.ContentType?.MediaType);
        Assert.Equal(Encoding.UTF8.GetString(Body), body);
        Assert.Equal((200, "req_1"), (response.StatusCode, response.RequestId));
        Assert.Equal("{}"u8.ToArray(), response.Body);
    }

    [Fact]
    public async Task Anthropic_SendsXApiKeyAndVersion()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, "{}", ("request-id", "req_a")));
        var client = Client(handler, new UpstreamOptions { Kind = UpstreamKind.Anthropic, ApiKey = new Secret("sk-ant"), AnthropicVersion = "2023-06-01" });

        var response = await client.SendAsync(BatchEndpoints.Messages, Body, Ct);

        var request = handler.Received.Single().Request;
        Assert.Equal("sk-ant", request.Headers.GetValues("x-api-key").Single());
        Assert.Equal("2023-06-01", request.Headers.GetValues("anthropic-version").Single());
        Assert.Null(request.Headers.Authorization);
        Assert.Equal(new Uri("https://api.anthropic.com/v1/messages"), request.RequestUri);
        Assert.Equal("req_a", response.RequestId);
    }

    [Fact]
    public async Task NoKey_SendsNoCredential()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, "{}"));

        await Client(handler, new UpstreamOptions { BaseUrl = new Uri("http://127.0.0.1:1/v1") }).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Null(handler.Received.Single().Request.Headers.Authorization);
    }

    [Theory]
    [InlineData("retry-after-ms", "1500", 1500)]
    [InlineData("retry-after", "7", 7000)]
    [InlineData("retry-after", "0.25", 250)]
    public async Task RetryAfter_IsRead(string header, string value, int expectedMs)
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.TooManyRequests, "{}", (header, value)));

        var response = await Client(handler, new UpstreamOptions()).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), response.RetryAfter);
    }

    [Fact]
    public async Task RetryAfter_AsAnHttpDate_IsTheTimeUntilThen()
    {
        var at = _time.GetUtcNow().AddSeconds(30).ToString("R");
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, "{}", ("retry-after", at)));

        var response = await Client(handler, new UpstreamOptions()).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(TimeSpan.FromSeconds(30), response.RetryAfter);
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("false", false)]
    public async Task XShouldRetry_IsRead(string value, bool expected)
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.BadRequest, "{}", ("x-should-retry", value)));

        var response = await Client(handler, new UpstreamOptions()).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(expected, response.ShouldRetry);
    }

    [Fact]
    public async Task ASlowUpstream_TimesOut_OnTheInjectedClock()
    {
        var handler = new ScriptedHandler(async (_, cancellationToken) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, _time, cancellationToken);
            return new HttpResponseMessage(HttpStatusCode.OK);
        });
        var client = Client(handler, new UpstreamOptions { RequestTimeout = TimeSpan.FromSeconds(30) });

        var sending = client.SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);
        await _time.RunUntilAsync(sending, TimeSpan.FromSeconds(1));

        var response = await sending;
        Assert.Equal(FailureCodes.RequestTimeout, response.FailureCode);
        Assert.Null(response.StatusCode);
        Assert.True(_time.GetUtcNow() >= new DateTimeOffset(2026, 11, 28, 12, 0, 30, TimeSpan.Zero));
    }

    [Fact]
    public async Task ARefusedConnection_IsAConnectionError()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var response = await new UpstreamClient(new HttpClient(), new UpstreamOptions { BaseUrl = new Uri($"http://127.0.0.1:{port}/v1") }, TimeProvider.System)
            .SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(FailureCodes.ConnectionError, response.FailureCode);
        Assert.Contains("refused", response.FailureMessage, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task AnAnswerOverTheLimit_IsNotRead()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, "[" + new string('1', 5000) + "]"));

        var response = await Client(handler, new UpstreamOptions { MaxResponseBytes = 2048 }).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(FailureCodes.ResponseTooLarge, response.FailureCode);
        Assert.Null(response.Body);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(40_000)]
    public async Task AnAnswerWithoutALength_IsReadWhole(int length)
    {
        var answer = "[" + new string('7', length - 2) + "]";
        var handler = new ScriptedHandler((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = Unsized(answer) }));

        var response = await Client(handler, new UpstreamOptions()).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Null(response.FailureCode);
        Assert.Equal(Encoding.UTF8.GetBytes(answer), response.Body);
    }

    [Fact]
    public async Task AnAnswerWithoutALength_OverTheLimit_IsNotKept()
    {
        var handler = new ScriptedHandler((_, _) => Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = Unsized("[" + new string('1', 50_000) + "]") }));

        var response = await Client(handler, new UpstreamOptions { MaxResponseBytes = 20_000 }).SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(FailureCodes.ResponseTooLarge, response.FailureCode);
        Assert.Null(response.Body);
    }

    [Fact]
    public async Task ARedirect_IsNotFollowed_ByTheEngineClient()
    {
        // A server that answers every request with a redirect to itself, and counts what reaches it.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var requests = 0;
        var serving = Task.Run(async () =>
        {
            while (true)
            {
                using var socket = await listener.AcceptSocketAsync(Ct);
                await using var stream = new NetworkStream(socket);
                var head = await ReadHeadAsync(stream);
                Interlocked.Increment(ref requests);
                var length = int.Parse(Regex.Match(head, "Content-Length: (\\d+)", RegexOptions.IgnoreCase).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                await stream.ReadExactlyAsync(new byte[length], Ct);
                await stream.WriteAsync(Encoding.ASCII.GetBytes(
                    $"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), Ct);
            }
        }, Ct);
        var services = new ServiceCollection();
        services.AddShepherdEngine(new ShepherdEngineOptions());
        await using var provider = services.BuildServiceProvider();
        var http = provider.GetRequiredService<IHttpClientFactory>().CreateClient(UpstreamClient.HttpClientName);

        var response = await new UpstreamClient(http, new UpstreamOptions { BaseUrl = new Uri($"http://127.0.0.1:{port}/v1") }, TimeProvider.System)
            .SendAsync(BatchEndpoints.ChatCompletions, Body, Ct);

        Assert.Equal(307, response.StatusCode);
        Assert.Equal(1, Volatile.Read(ref requests));
        listener.Stop();
        await Assert.ThrowsAnyAsync<Exception>(() => serving);
    }

    [Fact]
    public void TheKey_NeverPrints()
    {
        var key = new Secret("sk-very-secret");

        Assert.Equal("***", key.ToString());
        Assert.DoesNotContain("sk-very-secret", $"{key} {new UpstreamOptions { ApiKey = key }.ApiKey}", StringComparison.Ordinal);
    }

    /// <summary>Content that does not say its length, as a chunked answer.</summary>
    private static StreamContent Unsized(string text) => new(new UnseekableStream(Encoding.UTF8.GetBytes(text)));

    private static async Task<string> ReadHeadAsync(Stream stream)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || head[^4] != '\r' || head[^3] != '\n' || head[^2] != '\r' || head[^1] != '\n')
        {
            await stream.ReadExactlyAsync(one, Ct);
            head.Add(one[0]);
        }

        return Encoding.ASCII.GetString([.. head]);
    }

    private sealed class UnseekableStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}
