using System.Text;
using CsCheck;
using Shepherd.Engine.Configuration;
using Shepherd.Server.Configuration;
using Shepherd.Testing;

namespace Shepherd.Server.Tests.Configuration;

/// <summary>Any text given as a configuration file loads, or fails with a <see cref="ConfigException"/> that names the file.</summary>
public sealed class ConfigProperties : IDisposable
{
    /// <summary>A configuration that loads; the mutations start from it.</summary>
    internal const string Valid = """
        {
          // comments and trailing commas are allowed
          "upstreams": [
            { "name": "a", "provider": "openai", "baseUrl": "http://127.0.0.1:9/v1", "apiKey": "k", "weight": 2,
              "models": ["gpt-4.1-mini"], "rpm": 100, "tpm": 10000, "concurrency": 4, "lanes": { "gpt-4.1-mini": { "rpm": 10, "tpm": 100, "concurrency": 1 } } },
            { "provider": "anthropic", "baseUrl": "https://example.invalid", "apiKeyEnv": "SHEPHERD_FUZZ_UNSET", "batchApi": false },
          ],
          "server": { "urls": ["http://127.0.0.1:8080"], "gatewayKeys": [{ "name": "t", "apiKey": "g", "limits": { "dailyBudgetUsd": 2.5 } }], "maxUploadBytes": 1000, "maxFileRequests": 10,
                      "maxCreateBodyBytes": 1000, "maxCreateRequests": 5, "otlpEndpoint": "http://127.0.0.1:4317",
                      "modes": { "openai": "auto", "anthropic": "native", "inline": "realtime" },
                      "cache": { "enabled": true, "path": "answers.db", "maxMegabytes": 64, "maxAgeDays": 7, "sampled": false },
                      "gateway": { "callTimeoutSeconds": 30, "maxCallBodyBytes": 4096, "collectSize": 10, "collectSeconds": 5 } },
          "prices": { "m": { "input": 1.5, "output": 2, "cachedInput": 0.5, "batchDiscount": 0.5 } },
          "native": { "pollSeconds": 30 },
          "store": "state.db",
          "cluster": { "node": "n1", "nodeTimeoutSeconds": 15 }
        }
        """;

    private static readonly string[] Tokens =
    [
        "{", "}", "[", "]", ":", ",", " ", "\n", "\"", "null", "true", "false", "0", "-1", "1.5", "1e400", "-1e400", "99999999999999999999999999999999",
        "79228162514264337593543950336", "NaN", "\"NaN\"", "\"Infinity\"", "\"\"", "\" \"", "\"x\"", "\"http://a\"", "\"ftp://a\"", "\"//a\"", "\"a b\"", "\"\\ud800\"",
        "\"upstreams\"", "\"server\"", "\"prices\"", "\"native\"", "\"store\"", "\"cluster\"", "\"provider\"", "\"openai\"", "\"anthropic\"", "\"baseUrl\"",
        "\"apiKey\"", "\"apiKeyEnv\"", "\"apiKeyFile\"", "\"/\"", "\"/dev/null\"", "\"weight\"", "\"models\"", "\"lanes\"", "\"rpm\"", "\"tpm\"", "\"concurrency\"",
        "\"gatewayKeys\"", "\"urls\"", "\"maxUploadBytes\"", "\"otlpEndpoint\"", "\"input\"", "\"output\"", "\"cachedInput\"", "\"batchDiscount\"",
        "\"pollSeconds\"", "\"modes\"", "\"cache\"", "\"maxMegabytes\"", "\"maxAgeDays\"", "\"sampled\"", "\"gateway\"", "\"callTimeoutSeconds\"", "\"collectSize\"", "\"collectSeconds\"", "\"dailyBudgetUsd\"", "\"inline\"", "\"auto\"", "\"node\"", "\"nodeTimeoutSeconds\"", "\"postgres://u@h:5432/d\"", "\"Host=h;Port=99999999\"", "\"Host=;Database\"",
        "\"postgres://[::1\"", "\"postgresql://u:p@h:-1/d?sslmode=nope\"", "/*", "*/", "//", "\u00A0", "\u0000", "\uFEFF",
    ];

    private static readonly Gen<string> Soup = Gen.Int[0, Tokens.Length - 1].Select(i => Tokens[i]).List[0, 60].Select(parts => string.Concat(parts));

    private static readonly Gen<string> Mutated =
        Gen.Select(Gen.Int[0, 3], Gen.Int[0, Valid.Length], Gen.Int[0, 40], Gen.Int[0, Tokens.Length - 1])
            .Array[1, 6]
            .Select(edits =>
            {
                var text = new StringBuilder(Valid);
                foreach (var (kind, at, length, token) in edits)
                {
                    var start = Math.Min(at, text.Length);
                    var count = Math.Min(length, text.Length - start);
                    switch (kind)
                    {
                        case 0: text.Remove(start, count); break;
                        case 1: text.Insert(start, Tokens[token]); break;
                        case 2: text.Remove(start, count).Insert(start, Tokens[token]); break;
                        default: text.Insert(start, text.ToString(start, count)); break;
                    }
                }

                return text.ToString();
            });

    private readonly TempDirectory _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void ValidConfig_Loads()
    {
        var path = _folder.File("shepherd.json");
        File.WriteAllText(path, Valid);

        Assert.Equal(2, ConfigFile.Load(path).Upstreams.Count);
    }

    [Fact]
    public void AnyText_LoadsOrThrowsConfigExceptionNamingTheFile()
    {
        var path = _folder.File("shepherd.json");
        Gen.Frequency((1, Soup), (2, Mutated)).Sample(text =>
        {
            File.WriteAllText(path, text);
            try
            {
                Assert.NotNull(ConfigFile.Load(path));
            }
            catch (ConfigException ex)
            {
                Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            }
        }, iter: 1500, threads: 1, print: t => t);
    }
}
