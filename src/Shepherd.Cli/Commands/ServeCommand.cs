using System.CommandLine;
using Shepherd.Cli.Running;

namespace Shepherd.Cli.Commands;

/// <summary><c>shepherd serve</c>: the OpenAI and Anthropic batch APIs and inline batches, over the engine.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var engine = new EngineOptionSet("Where requests go: sim (the built-in simulated provider), openai (any OpenAI-compatible server, the default), anthropic");
        var urls = new Option<string?>("--urls") { Description = "Where to listen, separated by ';' (default http://127.0.0.1:8080; port 0 picks a free one)" };
        var store = CliOptions.NotBlank(new Option<string?>("--store", "--state")
        {
            Description = $"Where state lives: a SQLite file (default {ServerRun.DefaultStatePath}), or a PostgreSQL connection string (postgres://user@host:5432/db) that several nodes share",
        }, "a SQLite file or a PostgreSQL connection string");
        var otlp = CliOptions.Url("--otlp-endpoint", "Send traces of API calls and upstream requests to this OpenTelemetry collector (OTLP, such as http://127.0.0.1:4317); off by default");
        var node = CliOptions.NotBlank(new Option<string?>("--node") { Description = "This node's name among nodes sharing a PostgreSQL store (default: the machine's name and the port)" }, "a name");
        var gatewayKey = new Option<string[]>("--gateway-key")
        {
            Description = "A key clients must present (repeat it; each key is a tenant that sees only its own files and batches). Without keys anyone who can reach the server may use it",
            AllowMultipleArgumentsPerToken = false,
        };
        var command = new Command("serve", "Serve the OpenAI Batch API, the Anthropic Message Batches API and inline batches, with the engine inside; unfinished batches resume on start")
        {
            urls, store, node, gatewayKey, otlp,
        };
        foreach (var option in engine.All)
        {
            command.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var settings = engine.Read(parse, new ServeSettings
            {
                Urls = parse.GetValue(urls)?.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                Store = parse.GetValue(store),
                Node = parse.GetValue(node),
                OtlpEndpoint = parse.GetValue(otlp),
                GatewayKeys = parse.GetValue(gatewayKey) ?? [],
            });
            return await new ServerRun(settings, Console.Out, TimeProvider.System).ExecuteAsync(cancellationToken);
        });
        return command;
    }
}
