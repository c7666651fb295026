using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>Traces go to an OTLP collector when one is configured, and say which batch and item each request was for.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task WithACollector_EachUpstreamRequestAndApiCallIsASpan_NamingTheBatchAndTheItem()
    {
        using var collector = new Collector();
        await using var server = await RunningServer.StartAsync(tune: options => options.OtlpEndpoint = collector.Endpoint);

        var (_, created) = await server.PostAsync("/v1/batches", """{"model":"gpt-4o-mini","requests":[{"custom_id":"traced-item","prompt":"hello"}]}""");
        var id = created.GetProperty("id").GetString()!;
        await server.WaitForEndAsync(id);

        // The exporter sends every two seconds; spans of other servers in this process may come too.
        await Poll.UntilAsync(() => Task.FromResult(collector.Seen("upstream request") && collector.Seen(id) && collector.Seen("traced-item") && collector.Seen("/v1/batches")),
            TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.False(collector.Seen("hello"), "a prompt's words never go into a span");
        Assert.False(collector.Seen(RunningServer.Key), "a key never goes into a span");
    }

    /// <summary>An OTLP/HTTP receiver on 127.0.0.1 that keeps what it is sent (protobuf: names and values are plain UTF-8 in it).</summary>
    private sealed class Collector : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly ConcurrentQueue<byte[]> _bodies = new();

        public Collector()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            Endpoint = new Uri($"http://127.0.0.1:{port}/v1/traces");
            _ = ReceiveAsync();
        }

        public Uri Endpoint { get; }

        public bool Seen(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            return _bodies.Any(body => body.AsSpan().IndexOf(bytes) >= 0);
        }

        public void Dispose() => _listener.Close();

        private async Task ReceiveAsync()
        {
            try
            {
                while (true)
                {
                    var context = await _listener.GetContextAsync();
                    using var body = new MemoryStream();
                    await context.Request.InputStream.CopyToAsync(body);
                    _bodies.Enqueue(body.ToArray());
                    context.Response.StatusCode = 200;
                    context.Response.Close();
                }
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
            {
                // Closed at the end of the test.
            }
        }
    }
}
